"""Restoring redacted values in the cloud's answer, whole and streamed in arbitrary deltas; placeholders the cloud
made up become neutral markers, counted, and are never shown as if they were data."""

from __future__ import annotations

import itertools
import re

import pytest

from edged.domain import Message
from edged.sovereignty.redaction import CloudRelease
from edged.sovereignty.restore import PLACEHOLDER, Restorer, StreamRestorer, invented_marker

MAPPING = {
    "<PERSON_1>": "Maria Garcia",
    "<PERSON_12>": "Wei Zhang",
    "<EMAIL_ADDRESS_1>": "maria@example.com",
    "<STREET_ADDRESS_1>": "42 Baker Street <rear>",  # a value may itself contain '<'
}
OWN = {"<PERSON_99>"}  # placeholder-shaped text the caller wrote: an answer may quote it
ANSWER = (
    "Dear <PERSON_1>, I have forwarded your note to <PERSON_12> (<EMAIL_ADDRESS_1>). "
    "Parcel for <STREET_ADDRESS_1>. Unknown <PERSON_99> and <b>bold</b> stay; x < y. <PERSON_1>"
)
EXPECTED = (
    "Dear Maria Garcia, I have forwarded your note to Wei Zhang (maria@example.com). "
    "Parcel for 42 Baker Street <rear>. Unknown <PERSON_99> and <b>bold</b> stay; x < y. Maria Garcia"
)


def test_restore_replaces_known_placeholders_and_keeps_the_callers_own() -> None:
    restorer = Restorer(MAPPING, OWN)
    assert restorer.restore(ANSWER) == EXPECTED
    assert restorer.restored == 5
    assert restorer.invented == {}


def test_restore_without_mapping_is_identity() -> None:
    assert Restorer({}).restore(ANSWER) == ANSWER


def stream(deltas: list[str]) -> tuple[list[str], StreamRestorer]:
    restorer = StreamRestorer(MAPPING, OWN)
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
    assert restorer.feed("ona") == "<PERSona"  # no placeholder starts "<PERSo"
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


# ---- placeholders the cloud made up -----------------------------------------------------------------------

INVENTED = "Mail <EMAIL_ADDRESS_2>, then <EMAIL_ADDRESS_3>; call <PHONE_NUMBER_1>. Thanks, <PERSON_1>"
INVENTED_SHOWN = (
    "Mail [unknown email address], then [unknown email address]; call [unknown phone number]. "
    "Thanks, Maria Garcia"
)
INVENTED_COUNTS = {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}


def test_placeholders_the_cloud_made_up_become_markers_and_are_counted() -> None:
    restorer = Restorer(MAPPING, OWN)
    assert restorer.restore(INVENTED) == INVENTED_SHOWN
    assert (restorer.invented, restorer.restored) == (INVENTED_COUNTS, 1)
    assert invented_marker("<US_SSN_4>") == "[unknown us ssn]"


def test_every_two_way_split_of_invented_placeholders_shows_only_markers() -> None:
    """`<PHONE_NUMBER_1>` is a prefix of no known placeholder, and still no half of it reaches the caller."""
    for cut in range(len(INVENTED) + 1):
        restorer = StreamRestorer(MAPPING, OWN)
        emitted = [restorer.feed(INVENTED[:cut]), restorer.feed(INVENTED[cut:]), restorer.finish()]
        assert "".join(emitted) == INVENTED_SHOWN, cut
        assert not any(re.search(r"<[A-Z]", piece) for piece in emitted), (cut, emitted)
        assert restorer.invented == INVENTED_COUNTS, cut


@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_invented_placeholders_in_fixed_size_deltas(size: int) -> None:
    restorer = StreamRestorer(MAPPING, OWN)
    emitted = [restorer.feed(INVENTED[i : i + size]) for i in range(0, len(INVENTED), size)]
    assert "".join([*emitted, restorer.finish()]) == INVENTED_SHOWN
    assert restorer.invented == INVENTED_COUNTS


def test_an_answer_to_a_request_that_was_not_redacted_is_left_as_it_is() -> None:
    """Without a mapping the cloud saw no placeholders: placeholder-shaped text is its own, and nothing waits."""
    assert Restorer({}).restore(INVENTED) == INVENTED
    restorer = StreamRestorer({})
    assert restorer.feed("x <EMAIL_ADD") == "x <EMAIL_ADD"
    assert restorer.invented == {}


def test_a_long_run_after_a_bracket_is_not_held_back_for_ever() -> None:
    restorer = StreamRestorer(MAPPING)
    long_run = "<" + "A" * 60
    assert restorer.feed(long_run) == long_run


def test_a_release_treats_the_callers_placeholder_text_as_its_own() -> None:
    """Placeholder-shaped text in the caller's messages or stop strings is quoted back, not called invented."""
    originals = (Message("user", "Fill in <PERSON_1> and <DATE_1> for Maria Garcia."),)
    release = CloudRelease(
        messages=(Message("user", "Fill in <PERSON_1> and <DATE_1> for <PERSON_2>."),),
        redacted=True,
        mapping={"<PERSON_2>": "Maria Garcia"},
        originals=originals,
        stop=("<END_1>",),
    )
    answer = "Dear <PERSON_2>: <PERSON_1>, <DATE_1>, <PERSON_3> <END_1>"
    shown = "Dear Maria Garcia: <PERSON_1>, <DATE_1>, [unknown person] <END_1>"
    restorer = release.restorer()
    assert restorer.restore(answer) == shown
    assert restorer.invented == {"PERSON": 1}
    stream = release.stream_restorer()
    assert "".join([*(stream.feed(c) for c in answer), stream.finish()]) == shown
    assert stream.invented == {"PERSON": 1}
