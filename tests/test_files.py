"""write_atomic leaves the old file or the new one, and never its temporary file (issue 17: 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.files import write_atomic


def test_a_failed_replace_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.mkdir()  # os.replace cannot put a file over a non-empty directory
    (target / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_the_new_content_replaces_the_old(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
