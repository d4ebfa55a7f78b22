"""The committed configuration reference is what the schema generates (docs that cannot drift)."""

from __future__ import annotations

from pathlib import Path

from edged.config.reference import render

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "configuration-reference.md"


def test_reference_matches_the_schema() -> None:
    assert REFERENCE.read_text() == render(), "regenerate: python -m edged.config.reference > " + str(
        REFERENCE
    )


def test_every_field_has_a_description() -> None:
    rows = [line for line in render().splitlines() if line.startswith("| `")]
    undocumented = [line.split("|")[1] for line in rows if line.endswith("|  |")]
    assert undocumented == []
