#!/usr/bin/env python3
"""Write edged/sovereignty/english_words.txt.gz: the lower-case words of SCOWL's large American and British
English word lists (Kevin Atkinson's Spell Checker Oriented Word Lists, as Debian's `wamerican-large` and
`wbritish-large` packages carry them; the licence, a permissive notice that must travel with every copy, heads
the file). The lists write proper nouns capitalised and common words in lower case, so the lower-case entries
are the English words that are not only names: the privacy gate takes a capitalised word none of them spells,
in English prose, for a name (edged.sovereignty.unlisted).

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
OUT = Path(__file__).resolve().parents[1] / "edged" / "sovereignty" / "english_words.txt.gz"
# letters only (any script's), hyphens between them; no possessives, digits or capitals
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


def words(root: Path) -> list[str]:
    found: set[str] = set()
    for name in LISTS:
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            word = line.strip()
            if len(word) >= 2 and word == word.lower() and _WORD.fullmatch(word):
                found.add(word)
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("root", type=Path, help="the folder the two Debian packages were extracted into")
    root = parser.parse_args().root
    listed = words(root)
    notice = (root / NOTICE).read_text(encoding="utf-8")
    header = [
        f"# {len(listed)} lower-case English words from SCOWL's large American and British lists (Debian's",
        "# wamerican-large and wbritish-large 2020.12.07), written by scripts/gen_english_words.py.",
        "# Do not edit by hand. Their copyright notice, as Debian carries it:",
        "#",
        *(f"# {line}".rstrip() for line in notice.splitlines()),
    ]
    text = "\n".join([*header, *listed]) + "\n"
    OUT.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    print(f"{OUT}: {len(listed)} words")


if __name__ == "__main__":
    main()
