"""Restoring redacted values in the cloud's answer, whole and streamed in arbitrary deltas."""

from __future__ import annotations

import itertools

import pytest

from edged.sovereignty.restore import PLACEHOLDER, Restorer, StreamRestorer

MAPPING = {
    "<PERSON_1>": "Maria Garcia",
    "<PERSON_12>": "Wei Zhang",
    "<EMAIL_ADDRESS_1>": "maria@example.com",
    "<STREET_ADDRESS_1>": "42 Baker Street <rear>",  # a value may itself contain '<'
}
ANSWER = (
    "Dear <PERSON_1>, I have forwarded your note to <PERSON_12> (<EMAIL_ADDRESS_1>). "
    "Parcel for <STREET_ADDRESS_1>. Unknown <PERSON_99> and <b>bold</b> stay; x < y. <PERSON_1>"
)
EXPECTED = (
    "Dear Maria Garcia, I have forwarded your note to Wei Zhang (maria@example.com). "
    "Parcel for 42 Baker Street <rear>. Unknown <PERSON_99> and <b>bold</b> stay; x < y. Maria Garcia"
)


def test_restore_replaces_known_placeholders_only() -> None:
    restorer = Restorer(MAPPING)
    assert restorer.restore(ANSWER) == EXPECTED
    assert restorer.restored == 5


def test_restore_without_mapping_is_identity() -> None:
    assert Restorer({}).restore(ANSWER) == ANSWER


def stream(deltas: list[str]) -> tuple[list[str], StreamRestorer]:
    restorer = StreamRestorer(MAPPING)
    emitted = [restorer.feed(d) for d in deltas]
    emitted.append(restorer.finish())
    return emitted, restorer


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, 64])
def test_stream_in_fixed_size_deltas(size: int) -> None:
    deltas = [ANSWER[i : i + size] for i in range(0, len(ANSWER), size)]
    emitted, restorer = stream(deltas)
    assert "".join(emitted) == EXPECTED
    assert restorer.restored == 5


def test_every_two_way_split_restores_and_never_emits_half_a_placeholder() -> None:
    for cut in range(len(ANSWER) + 1):
        emitted, _ = stream([ANSWER[:cut], ANSWER[cut:]])
        assert "".join(emitted) == EXPECTED, cut
        for piece in emitted:
            assert not _has_partial_placeholder(piece), (cut, piece)


def test_every_three_way_split_of_a_placeholder_run() -> None:
    text = "a<PERSON_1><EMAIL_ADDRESS_1>b"
    expected = "aMaria Garciamaria@example.comb"
    for i, j in itertools.combinations(range(len(text) + 1), 2):
        emitted, _ = stream([text[:i], text[i:j], text[j:]])
        assert "".join(emitted) == expected, (i, j)
        assert all(not _has_partial_placeholder(p) for p in emitted), (i, j)


def test_held_text_is_released_when_it_stops_looking_like_a_placeholder() -> None:
    restorer = StreamRestorer(MAPPING)
    assert restorer.feed("x <PERS") == "x "
    assert restorer.feed("ONA") == "<PERSONA"  # no placeholder starts "<PERSONA"
    assert restorer.feed("<EMAIL_ADDRESS_") == ""
    assert restorer.feed("1>") == "maria@example.com"


def test_unfinished_placeholder_is_flushed_at_the_end() -> None:
    restorer = StreamRestorer(MAPPING)
    assert restorer.feed("cut off at <PERSON_") == "cut off at "
    assert restorer.finish() == "<PERSON_"


def test_repr_holds_no_values() -> None:
    restorer = StreamRestorer(MAPPING)
    restorer.feed("<PERSON_1> <PERS")
    for text in (repr(restorer), repr(Restorer(MAPPING))):
        assert not any(v in text for v in MAPPING.values())


def _has_partial_placeholder(piece: str) -> bool:
    """True when `piece` ends inside a known placeholder (a proper prefix of one is at its end)."""
    return any(
        any(p.startswith(piece[i:]) and len(piece) - i < len(p) for p in MAPPING) for i in range(len(piece))
    )


def test_placeholder_pattern() -> None:
    assert PLACEHOLDER.fullmatch("<US_SSN_3>")
    assert PLACEHOLDER.fullmatch("<PERSON_10>")
    assert not PLACEHOLDER.fullmatch("<person_1>")
    assert not PLACEHOLDER.fullmatch("<PERSON>")
