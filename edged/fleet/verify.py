"""Checking one inbound fleet message, cheapest and least trusting checks first.

    size -> JSON and envelope shape -> kind and target match the topic -> trusted key id -> signature
         -> version above the highest accepted, or at least the one learned from the device's own retained
            state after it lost its own (rollback) -> issued_at not beyond the clock skew (future_dated)
         -> not expired (freeze)

Nothing in a message influences a decision before its signature verified, except the shape checks that are
needed to find the key. The profile itself is validated afterwards by the device (it needs the merge).
"""

from __future__ import annotations

import hashlib

from edged.config.fleet import DAY_S
from edged.errors import Rejected, RejectReason
from edged.fleet.envelope import Envelope, Target, decode
from edged.fleet.keys import KeyRing
from edged.fleet.store import StreamRecord, StreamState


def digest(envelope: Envelope) -> str:
    """Identity of an envelope's signed content (Ed25519 signatures are deterministic, so this is unique)."""
    return hashlib.sha256(envelope.signed_bytes).hexdigest()


def verify(
    payload: bytes,
    *,
    kind: str,
    expected: Target,
    ring: KeyRing,
    last: StreamRecord | None,
    now: float,
    max_bytes: int,
    max_skew_s: float = DAY_S,
) -> Envelope | None:
    """The verified envelope, or None when it is the very envelope already accepted (a retained redelivery).

    Raises Rejected with the reason and a detail naming the field, the value and the limit.
    """
    envelope = decode(payload, max_bytes)
    if envelope.kind != kind:
        raise Rejected(
            RejectReason.WRONG_TARGET, f"kind {envelope.kind!r} arrived on a {kind!r} topic", envelope.version
        )
    if envelope.target != expected:
        raise Rejected(
            RejectReason.WRONG_TARGET,
            f"target is {envelope.target}, but this topic is for {expected}",
            envelope.version,
        )
    ring.check(envelope)
    if last is not None:
        if envelope.version == last.version and digest(envelope) == last.digest:
            return None
        if last.state is StreamState.LEARNED and envelope.version < last.version:
            raise Rejected(
                RejectReason.ROLLBACK,
                f"version {envelope.version} is below {last.version}, the highest this device reported for "
                f"{expected} (its retained state) before its fleet state was lost",
                envelope.version,
            )
        if last.state is not StreamState.LEARNED and envelope.version <= last.version:
            raise Rejected(
                RejectReason.ROLLBACK,
                f"version {envelope.version} is not above {last.version}, the highest accepted for "
                f"{expected}",
                envelope.version,
            )
    if envelope.issued_at > now + max_skew_s:
        raise Rejected(
            RejectReason.FUTURE_DATED,
            f"issued_at {envelope.issued_at} is {envelope.issued_at - int(now)}s ahead of this device's clock "
            f"({int(now)}); fleet.max_clock_skew_s is {max_skew_s:g}",
            envelope.version,
        )
    if envelope.expires_at <= now:
        raise Rejected(
            RejectReason.EXPIRED,
            f"expires_at {envelope.expires_at} is before now ({int(now)})",
            envelope.version,
        )
    return envelope
