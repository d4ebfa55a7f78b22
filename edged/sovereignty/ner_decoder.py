"""spaCy's greedy NER decoding, re-done with numpy over the same model's weights, for one document at a time.

Why: in a 1,000-character scan spaCy's NER (en_core_web_sm, spaCy 3.8) spends ~7 ms in its tok2vec layers and
~17 ms in its transition loop; the loop asks all 74 moves whether they are valid and runs a 1 x 64 x 74 blis
product through blis's thread machinery at every token (a py-spy profile: set_valid 51%, sgemm 9%, pthread
locking 19% of predict). Most tokens are outside any entity, and there the state's features are only the
token itself, so the scores of every "no entity open" step are one matrix product for the whole document;
only the tokens inside an entity are scored one step at a time. Same model, same features, same valid-move
rules, same argmax (the first best valid move): the entities are those of spaCy's own loop, which
`NerDecoder.agrees` checks when it is built.

The token vectors the scores start from are computed with numpy too (`Tok2Vec`: the same layers over the same
weights, bit-identical when thinc multiplies with OpenBLAS, checked against thinc's predict when built): for a
1,000-character prompt (~196 tokens, OpenBLAS on one thread) ~4 ms instead of thinc's ~7 ms, which went mostly
to per-layer Python and copies around its five ~0.4 ms matrix products; `NerDecoder.entities` ~9.5 ms -> ~6 ms.

A model whose tok2vec also embeds static word vectors (en_core_web_md: 514k words mapped to 20k rows of 300)
reads them through `WordVectors`: the table memory-mapped from the package's file, the word-to-row index as two
sorted arrays. spaCy's own Vectors would keep the index in a Python dict and the vocab's 709k strings beside it,
~230 MB of the model's ~270 MB in this process; neither is needed to compute the NER's features, which are hashes.

Only the rules for a fresh document are implemented (no preset entities, no sentence starts: the gate's
pipeline has neither a parser nor a senter); `NerDecoder.build` returns None for a model of another shape.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy
import srsly
from numpy.typing import NDArray
from spacy.attrs import ORTH
from spacy.tokens import Doc, Span
from spacy.vectors import Vectors
from spacy.vocab import Vocab

logger = logging.getLogger(__name__)

Floats = NDArray[numpy.float32]
_OUT, _BEGIN, _IN, _LAST, _UNIT = "O", "B", "I", "L", "U"

# Checked at build: the numpy tok2vec must give thinc's vectors for these words, or thinc's predict runs.
TOK2VEC_CHECK_WORDS = re.findall(
    r"\n+|\S+",
    "Dear Ms. Okonkwo , Jean-Luc Picard of ACME Corp. ( Lyon ) wrote on 12/03/2026 :\n\ncall +44 20 7946 0958 "
    "or mail jl.picard@example.org about IBAN GB82WEST12345698765432 .",
)


class NerDecoder:
    """The entities spaCy's NER component would find in a document, from the component's model."""

    def __init__(
        self, ner: Any, moves: list[tuple[str, str]], unseen: list[int], vectors: WordVectors | None = None
    ) -> None:
        model = ner.model
        self._vocab = ner.vocab
        self._tok2vec, self._lower, upper = (
            model.get_ref("tok2vec"),
            model.get_ref("lower"),
            model.get_ref("upper"),
        )
        self._fast_tok2vec = _checked_tok2vec(
            self._tok2vec, Doc(ner.vocab, words=TOK2VEC_CHECK_WORDS), vectors
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
    def build(cls, ner: Any, vectors: WordVectors | None = None) -> NerDecoder | None:
        """A decoder for this NER component, or None when its model is not the shape this one decodes.
        `vectors`: the pipeline's word vectors, for a tok2vec that embeds them (its check runs inside
        `vectors_for`, so that thinc's layers see the check words' rows too)."""
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
        return cls(ner, moves, sorted(model.attrs.get("unseen_classes", set())), vectors)

    @property
    def tok2vec_library(self) -> str:
        """ "numpy" (edged's Tok2Vec) or "thinc": what computes the token vectors."""
        return "numpy" if self._fast_tok2vec else "thinc"

    def spans(self, doc: Doc) -> list[Span]:
        """The entities as spans of `doc` (doc.ents is left unset: its setter walks every token)."""
        return [Span(doc, start, end, label=label) for start, end, label in self.entities(doc)]

    def entities(self, doc: Doc) -> list[tuple[int, int, str]]:
        """(start token, end token, label) of each entity, in order."""
        n = len(doc)
        if n == 0:
            return []
        vectors = self._fast_tok2vec(doc) if self._fast_tok2vec else self._tok2vec.predict([doc])
        cached: Floats = self._lower.predict(vectors)  # (n + 1, 3, hidden, pieces)
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


class WordVectors:
    """A spaCy pipeline's static word vectors, read from its vocab folder without spaCy's Vectors: the table
    (`vectors`, a .npy file) memory-mapped, so only the rows of words met are read in, and `key2row` as two sorted
    arrays (12 bytes a word instead of a dict entry and two ints, ~100)."""

    def __init__(self, table: Floats, keys: NDArray[numpy.uint64], rows: NDArray[numpy.int32]) -> None:
        order = numpy.argsort(keys)
        self.table = table
        self._keys = numpy.ascontiguousarray(keys[order])
        self._rows = numpy.ascontiguousarray(rows[order])

    @classmethod
    def load(cls, vocab_dir: Path) -> WordVectors | None:
        """The vectors in this vocab folder, or None when it has none (en_core_web_sm) or not in spaCy's
        default mode (floret vectors are hashed, not looked up)."""
        table_file, index_file, config_file = (vocab_dir / n for n in ("vectors", "key2row", "vectors.cfg"))
        if not table_file.is_file() or not index_file.is_file():
            return None
        if config_file.is_file() and json.loads(config_file.read_text()).get("mode", "default") != "default":
            return None
        table = numpy.load(table_file, mmap_mode="r", allow_pickle=False)
        if table.ndim != 2 or table.size == 0 or table.dtype != numpy.float32:
            return None
        index: dict[int, int] = srsly.read_msgpack(index_file)
        keys = numpy.fromiter(index.keys(), dtype=numpy.uint64, count=len(index))
        rows = numpy.fromiter(index.values(), dtype=numpy.int32, count=len(index))
        del index
        if len(rows) and (rows.min() < 0 or rows.max() >= len(table)):
            return None
        return cls(table, keys, rows)

    @property
    def width(self) -> int:
        return int(self.table.shape[1])

    def __len__(self) -> int:
        return len(self._keys)

    def rows(self, keys: NDArray[numpy.uint64]) -> NDArray[numpy.int32]:
        """Each key's row in the table, -1 for a word without a vector (as spaCy's Vectors.find)."""
        if not len(self._keys):
            return numpy.full(len(keys), -1, dtype=numpy.int32)
        at = numpy.minimum(numpy.searchsorted(self._keys, keys), len(self._keys) - 1)
        found: NDArray[numpy.int32] = numpy.where(self._keys[at] == keys, self._rows[at], -1).astype(
            numpy.int32
        )
        return found

    def projected(self, keys: NDArray[numpy.uint64], weights: Floats, out: Floats) -> None:
        """spaCy's StaticVectors: each word's vector times the layer's weights into `out`; zeros for a word
        without one."""
        rows = self.rows(keys)
        numpy.matmul(numpy.asarray(self.table[numpy.maximum(rows, 0)]), weights.T, out=out)
        out[rows < 0] = 0.0


@contextmanager
def vectors_for(vocab: Vocab, vectors: WordVectors | None, words: Iterable[str]) -> Iterator[None]:
    """spaCy's own layers see the vectors of these words (and no others) inside the block: the load-time checks
    compare edged's computation with spaCy's, which reads vectors from the vocab. The vocab has none after."""
    if vectors is None:
        yield
        return
    keys = numpy.array(sorted({vocab.strings.add(word) for word in words}), dtype=numpy.uint64)
    rows = vectors.rows(keys)
    known = rows >= 0
    saved = vocab.vectors
    vocab.vectors = Vectors(
        data=numpy.ascontiguousarray(vectors.table[rows[known]]), keys=[int(k) for k in keys[known]]
    )
    try:
        yield
    finally:
        vocab.vectors = saved


class Tok2Vec:
    """The vectors the NER component's tok2vec gives a document, computed with numpy: spaCy's Tok2Vec.v2
    (MultiHashEmbed, with or without static vectors, MaxoutWindowEncoder) and the parser model's linear
    projection."""

    def __init__(self, model: Any, vectors: WordVectors | None = None) -> None:
        leaves = _leaves(model)
        self._ops, self._columns = model.ops, list(leaves[0].attrs["columns"])
        tables = leaves[3 : 2 + 2 * len(self._columns) : 2]
        self._tables: list[tuple[Floats, int]] = [(t.get_param("E"), t.attrs["seed"]) for t in tables]
        mix = 2 + 2 * len(self._columns)
        self._vectors, self._vectors_w = None, None
        if leaves[mix].name == "static_vectors":
            self._vectors, self._vectors_w = vectors, leaves[mix].get_param("W")  # (width, vector width)
            mix += 1
        self._mix = _Maxout(leaves[mix], leaves[mix + 1])
        self._blocks = [_Maxout(leaves[i + 1], leaves[i + 2]) for i in range(mix + 4, len(leaves) - 2, 4)]
        self._window: int = leaves[mix + 4].attrs["window_size"]
        encoder = next(m for m in model.walk() if m.name.startswith("with_array(residual"))
        # rows of zeros either side of the document, as thinc's with_array
        self._pad: int = encoder.attrs["pad"]
        self._project_w: Floats = leaves[-1].get_param("W")
        self._project_b: Floats = leaves[-1].get_param("b")

    @classmethod
    def build(cls, model: Any, vectors: WordVectors | None = None) -> Tok2Vec | None:
        """The numpy forward pass of this tok2vec model, or None when the model is not the shape it computes
        (or embeds static vectors and `vectors` are not theirs)."""
        leaves = _leaves(model)
        if not leaves or leaves[0].name != "extract_features":
            return None
        columns = len(leaves[0].attrs["columns"])
        blocks = [leaf for leaf in leaves if leaf.name == "expand_window"]
        static = any(leaf.name == "static_vectors" for leaf in leaves)
        if not blocks or model.name != _tok2vec_name(columns, len(blocks), static=static):
            return None
        getitems = leaves[2 : 2 + 2 * columns : 2]
        computable = (
            (not static or _reads(leaves[2 + 2 * columns], vectors))
            and all(g.attrs["index"] == (slice(0, None), i) for i, g in enumerate(getitems))
            and all(b.attrs["window_size"] == blocks[0].attrs["window_size"] for b in blocks)
            and all(leaf.get_param(p).dtype == numpy.float32 for leaf in leaves for p in leaf.param_names)
        )
        return cls(model, vectors) if computable else None

    def __call__(self, doc: Doc) -> Floats:
        """(tokens, width): what `model.predict([doc])` gives."""
        n, pad = len(doc), self._pad
        encoded = numpy.zeros((n + 2 * pad, self._mix.width), dtype=numpy.float32)
        self._mix(self._embedded(doc), out=encoded[pad : pad + n])
        # The encoder runs over the padding rows too, as thinc's with_array(pad=...) does: they start as zeros
        # but take values from the first block on, and the tokens near either end see them.
        windows = numpy.zeros((len(encoded), (2 * self._window + 1) * self._mix.width), dtype=numpy.float32)
        block_out = numpy.empty_like(encoded)
        for block in self._blocks:
            _fill_windows(encoded, self._window, windows)
            encoded += block(windows, out=block_out)
        vectors: Floats = encoded[pad : pad + n] @ self._project_w.T
        vectors += self._project_b
        return vectors

    def agrees(self, model: Any, doc: Doc) -> bool:
        """Whether this gives the model's own vectors for `doc`, up to float32 rounding."""
        expected: Floats = model.predict([doc])
        ours = self(doc)
        scale = max(1.0, float(numpy.abs(expected).max(initial=0.0)))
        return (
            ours.shape == expected.shape
            and float(numpy.abs(ours - expected).max(initial=0.0)) <= 1e-4 * scale
        )

    def _embedded(self, doc: Doc) -> Floats:
        """The concatenated hash embeddings of each token's attributes, then its projected static vector if the
        model has them: (tokens, (tables + 1) x width)."""
        ids = doc.to_array(self._columns).reshape(len(doc), -1).astype(numpy.uint64)
        width = self._tables[0][0].shape[1]
        parts = len(self._tables) + (self._vectors_w is not None)
        out = numpy.empty((len(doc), width * parts), dtype=numpy.float32)
        for i, (table, seed) in enumerate(self._tables):
            rows = self._ops.hash(numpy.ascontiguousarray(ids[:, i]), seed) % len(table)  # (tokens, 4)
            numpy.sum(table[rows], axis=1, out=out[:, i * width : (i + 1) * width])
        if self._vectors is not None and self._vectors_w is not None:
            keys = doc.to_array(ORTH).astype(numpy.uint64)
            self._vectors.projected(keys, self._vectors_w, out=out[:, len(self._tables) * width :])
        return out


class _Maxout:
    """thinc's Maxout followed by its LayerNorm (and a dropout, which does nothing at predict time)."""

    def __init__(self, maxout: Any, norm: Any) -> None:
        width, pieces, inputs = maxout.get_param("W").shape
        self.width, self._pieces = width, pieces
        self._w: Floats = maxout.get_param("W").reshape(width * pieces, inputs)
        self._b: Floats = maxout.get_param("b").reshape(width * pieces)
        self._gain: Floats = norm.get_param("G")
        self._bias: Floats = norm.get_param("b")

    def __call__(self, x: Floats, out: Floats) -> Floats:
        """Writes the block's output for `x` into `out` (rows, width), and returns it."""
        pieces = x @ self._w.T
        pieces += self._b
        # The max of each unit's pieces, one piece at a time: numpy.max over an axis of 3 is ~50x slower.
        grouped = pieces.reshape(len(x), self.width, self._pieces)
        numpy.copyto(out, grouped[..., 0])
        for piece in range(1, self._pieces):
            numpy.maximum(out, grouped[..., piece], out=out)
        # LayerNorm as thinc's: (x - mean) / sqrt(var + 1e-8), then scaled and shifted.
        out -= out.mean(axis=1, keepdims=True)
        out *= (numpy.square(out).mean(axis=1, keepdims=True) + 1e-8) ** -0.5
        out *= self._gain
        out += self._bias
        return out


def _fill_windows(x: Floats, window: int, out: Floats) -> None:
    """thinc's seq2col: in each row of `out`, the rows of `x` from `window` before to `window` after it, side
    by side; zeros beyond either end (those cells of `out` are never written, so they stay as allocated)."""
    width = x.shape[1]
    for k in range(-window, window + 1):
        cells = out[:, (k + window) * width : (k + window + 1) * width]
        if k < 0:
            cells[-k:] = x[:k]
        elif k > 0:
            cells[:-k] = x[k:]
        else:
            cells[:] = x


def _tok2vec_name(columns: int, depth: int, *, static: bool = False) -> str:
    """thinc's name for spaCy's Tok2Vec.v2 with MultiHashEmbed (and static vectors) and MaxoutWindowEncoder, then
    a projection."""
    embed = "|".join(["ints-getitem>>hashembed"] * columns)
    hashed = f"extract_features>>list2ragged>>with_array({embed})"
    embedded = f"{hashed}|static_vectors" if static else hashed
    blocks = ">>".join(["residual(expand_window>>maxout>>layernorm>>dropout)"] * depth)
    return (
        f"{embedded}>>with_array(maxout>>layernorm>>dropout)>>ragged2list"
        f">>with_array({blocks})>>list2array>>linear"
    )


def _reads(layer: Any, vectors: WordVectors | None) -> bool:
    """Whether a static-vectors layer reads these vectors: looked up by ORTH, as wide as its weights."""
    return (
        vectors is not None
        and vectors.width == layer.get_param("W").shape[1]
        and layer.attrs.get("key_attr", "ORTH") == "ORTH"
    )


def _leaves(model: Any) -> list[Any]:
    """The model's layers without layers of their own, in the order they run."""
    return [leaf for layer in model.layers for leaf in _leaves(layer)] if model.layers else [model]


def _checked_tok2vec(model: Any, doc: Doc, vectors: WordVectors | None) -> Tok2Vec | None:
    """The numpy tok2vec for this model if it computes this shape and gives thinc's vectors for `doc`."""
    fast = Tok2Vec.build(model, vectors)
    if fast is None:
        logger.warning("NER tok2vec of a shape edged does not compute: thinc's predict runs it")
    elif not fast.agrees(model, doc):
        logger.warning("edged's NER tok2vec differs from thinc's on the check words: thinc's predict runs it")
        return None
    return fast
