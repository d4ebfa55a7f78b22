"""Reply chunks of one escalation back in seq order: early chunks wait (bounded), duplicates are dropped."""

from __future__ import annotations

from edged.errors import CloudUnavailable
from edged.v1.escalation_pb2 import EscalationChunk


class ChunkSequencer:
    def __init__(self, max_held: int) -> None:
        if max_held < 1:
            raise ValueError(f"max_held must be at least 1, got {max_held}")
        self._max_held = max_held
        self._next = 0
        self._held: dict[int, EscalationChunk] = {}
        self.finished = False
        self.duplicates = 0

    @property
    def next_seq(self) -> int:
        return self._next

    def push(self, chunk: EscalationChunk) -> list[EscalationChunk]:
        """The chunks that are now in order (possibly none); a chunk seen before is ignored.

        Raises CloudUnavailable when more than `max_held` chunks wait for a gap to fill."""
        seq = chunk.seq
        if self.finished or seq < self._next or seq in self._held:
            self.duplicates += 1
            return []
        if len(self._held) >= self._max_held:
            raise CloudUnavailable(
                f"reply chunk {self._next} never arrived ({len(self._held)} later chunks held)"
            )
        self._held[seq] = chunk
        ready: list[EscalationChunk] = []
        while self._next in self._held:
            current = self._held.pop(self._next)
            self._next += 1
            ready.append(current)
            if current.done:
                self.finished = True
                self._held.clear()
                break
        return ready
