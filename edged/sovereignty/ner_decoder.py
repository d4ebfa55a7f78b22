"""spaCy's greedy NER decoding, re-done with numpy over the same model's weights, for one document at a time.

Why: in a 1,000-character scan spaCy's NER (en_core_web_sm, spaCy 3.8) spends ~7 ms in its tok2vec layers and
~17 ms in its transition loop; the loop asks all 74 moves whether they are valid and runs a 1 x 64 x 74 blis
product through blis's thread machinery at every token (a py-spy profile: set_valid 51%, sgemm 9%, pthread
locking 19% of predict). Most tokens are outside any entity, and there the state's features are only the
token itself, so the scores of every "no entity open" step are one matrix product for the whole document;
only the tokens inside an entity are scored one step at a time. Same model, same features, same valid-move
rules, same argmax (the first best valid move): the entities are those of spaCy's own loop, which
`NerDecoder.agrees` checks when it is built.

Only the rules for a fresh document are implemented (no preset entities, no sentence starts: the gate's
pipeline has neither a parser nor a senter); `NerDecoder.build` returns None for a model of another shape.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy
from numpy.typing import NDArray
from spacy.tokens import Doc, Span

logger = logging.getLogger(__name__)

Floats = NDArray[numpy.float32]
_OUT, _BEGIN, _IN, _LAST, _UNIT = "O", "B", "I", "L", "U"


class NerDecoder:
    """Sets `doc.ents` as spaCy's NER component would, from the component's model."""

    def __init__(self, ner: Any, moves: list[tuple[str, str]], unseen: list[int]) -> None:
        model = ner.model
        self._vocab = ner.vocab
        self._tok2vec, self._lower, upper = (
            model.get_ref("tok2vec"),
            model.get_ref("lower"),
            model.get_ref("upper"),
        )
        self._upper_w: Floats = upper.get_param("W")  # (classes, hidden)
        self._upper_b: Floats = upper.get_param("b")
        self._bias: Floats = self._lower.get_param("b")  # (hidden, pieces)
        self._kinds = [kind for kind, _ in moves]
        self._labels = [label for _, label in moves]
        self._seen = numpy.ones(len(moves), dtype=bool)
        self._seen[unseen] = False
        labelled = numpy.array([label != "" for label in self._labels])
        kinds = numpy.array(self._kinds)
        self._out = int(numpy.flatnonzero(kinds == _OUT)[0])
        # Moves valid with no entity open (ner.pyx's is_valid without preset entities): O always; U and B with a
        # label, never on whitespace; B not on the last token.
        self._closed_any = (kinds == _OUT) | ((kinds == _UNIT) & labelled)
        self._closed_begin = (kinds == _BEGIN) & labelled
        self._in_of = {lab: i for i, (k, lab) in enumerate(moves) if k == _IN and lab}
        self._last_of = {lab: i for i, (k, lab) in enumerate(moves) if k == _LAST and lab}

    @classmethod
    def build(cls, ner: Any) -> NerDecoder | None:
        """A decoder for this NER component, or None when its model is not the shape this one decodes."""
        model = ner.model
        if ner.cfg.get("beam_width", 1) != 1 or set(model.ref_names) != {"tok2vec", "lower", "upper"}:
            return None
        lower = model.get_ref("lower")
        if lower.get_dim("nF") != 3 or lower.get_dim("nP") < 2 or not model.attrs.get("has_upper", False):
            return None
        moves = []
        for i in range(ner.moves.n_moves):
            name = ner.moves.get_class_name(i)
            kind, _, label = name.partition("-")
            if kind not in (_OUT, _BEGIN, _IN, _LAST, _UNIT):
                return None
            moves.append((kind, label))
        if sum(kind == _OUT for kind, _ in moves) != 1:
            return None
        return cls(ner, moves, sorted(model.attrs.get("unseen_classes", set())))

    def __call__(self, doc: Doc) -> Doc:
        """Sets doc.ents (and returns doc)."""
        doc.ents = [Span(doc, start, end, label=label) for start, end, label in self.entities(doc)]
        return doc

    def entities(self, doc: Doc) -> list[tuple[int, int, str]]:
        """(start token, end token, label) of each entity, in order."""
        n = len(doc)
        if n == 0:
            return []
        cached: Floats = self._lower.predict(self._tok2vec.predict([doc]))  # (n + 1, 3, hidden, pieces)
        space = numpy.array([t.is_space for t in doc])
        closed = self._scores(cached[1:, 0] + cached[0, 1] + cached[0, 2])  # (n, classes)
        valid = numpy.broadcast_to(self._closed_any, closed.shape).copy()
        valid[space] = False
        valid[space, self._out] = True
        begins = ~space.copy()
        begins[-1] = False
        valid[begins] |= self._closed_begin
        guesses = _first_best(closed, valid)
        found: list[tuple[int, int, str]] = []
        t = 0
        while t < n:
            kind, label = self._kinds[guesses[t]], self._labels[guesses[t]]
            if kind == _UNIT:
                found.append((t, t + 1, label))
            elif kind == _BEGIN:
                end = self._entity_end(cached, t, label, n)
                found.append((t, end, label))
                t = end - 1
            t += 1
        return found

    def _entity_end(self, cached: Floats, start: int, label: str, n: int) -> int:
        """The end of the entity begun at `start`: step by step, I (not on the last token) or L, the better."""
        inside, last = self._in_of[label], self._last_of[label]
        for t in range(start + 1, n):
            # The features of a state with an entity open: the token, the entity's first token, the previous one.
            scores = self._scores((cached[t + 1, 0] + cached[start + 1, 1] + cached[t, 2])[numpy.newaxis])[0]
            better_in = scores[inside] > scores[last] or (scores[inside] == scores[last] and inside < last)
            if t == n - 1 or not better_in:
                return t + 1
        return n  # not reached: B is never valid on the last token

    def _scores(self, unmaxed: Floats) -> Floats:
        hidden = (unmaxed + self._bias).max(axis=-1)
        scores: Floats = hidden @ self._upper_w.T + self._upper_b
        if not self._seen.all():
            scores[:, ~self._seen] = scores.min(axis=1, keepdims=True)
        return scores


def _first_best(scores: Floats, valid: NDArray[numpy.bool_]) -> NDArray[numpy.intp]:
    """Per row, the first index of the highest score among the valid ones."""
    masked = numpy.where(valid, scores, -numpy.inf)
    best: NDArray[numpy.intp] = numpy.argmax(masked, axis=1)
    return best
