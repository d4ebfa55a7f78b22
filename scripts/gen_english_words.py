#!/usr/bin/env python3
"""Write edged/sovereignty/english_words.txt.gz and proper_nouns.txt.gz from SCOWL's large American and British
English word lists (Kevin Atkinson's Spell Checker Oriented Word Lists, as Debian's `wamerican-large` and
`wbritish-large` packages carry them; the licence, a permissive notice that must travel with every copy, heads
each file). The lists write common words in lower case and proper nouns capitalised: the lower-case entries
are the English words, the capitalised ones (lower-cased here) the places, companies, works and well-known
people and names a dictionary knows. The privacy gate takes a capitalised word that neither list spells, in
English prose, for a name (edged.sovereignty.unlisted).

    cd /tmp && apt-get download wamerican-large wbritish-large
    for f in w*-large_*.deb; do dpkg-deb -x "$f" /tmp/scowl; done
    .venv/bin/python scripts/gen_english_words.py /tmp/scowl

The output is deterministic (sorted, gzip without a timestamp).
"""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

LISTS = ("usr/share/dict/american-english-large", "usr/share/dict/british-english-large")
NOTICE = "usr/share/doc/wamerican-large/copyright"
FOLDER = Path(__file__).resolve().parents[1] / "edged" / "sovereignty"
# letters only (any script's), hyphens between them; no possessives, digits or capitals
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


def words(root: Path) -> tuple[list[str], list[str]]:
    """The lower-case words, and the capitalised ones (a capital, then lower case: "Reuters", not "McDonald" or
    "NASA") lower-cased."""
    common: set[str] = set()
    proper: set[str] = set()
    for name in LISTS:
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            word = line.strip()
            if len(word) < 2 or not _WORD.fullmatch(word):
                continue
            if word == word.lower():
                common.add(word)
            elif word[0].isupper() and word[1:] == word[1:].lower():
                proper.add(word.lower())
    return sorted(common), sorted(proper)


def write(name: str, listed: list[str], what: str, notice: str) -> None:
    header = [
        f"# {len(listed)} {what} from SCOWL's large American and British lists (Debian's",
        "# wamerican-large and wbritish-large 2020.12.07), written by scripts/gen_english_words.py.",
        "# Do not edit by hand. Their copyright notice, as Debian carries it:",
        "#",
        *(f"# {line}".rstrip() for line in notice.splitlines()),
    ]
    text = "\n".join([*header, *listed]) + "\n"
    (FOLDER / name).write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    print(f"{FOLDER / name}: {len(listed)} words")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("root", type=Path, help="the folder the two Debian packages were extracted into")
    root = parser.parse_args().root
    common, proper = words(root)
    notice = (root / NOTICE).read_text(encoding="utf-8")
    write("english_words.txt.gz", common, "lower-case English words", notice)
    write("proper_nouns.txt.gz", proper, "capitalised words (proper nouns), lower-cased,", notice)


if __name__ == "__main__":
    main()
