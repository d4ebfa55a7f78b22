"""The socket's directory must be ours: one another user made first (to take the socket over) is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edged.api.server import prepare_socket_path
from edged.errors import ConfigError

OTHER_UID = 54321


def test_a_directory_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a directory owned by another user needs root")
    taken = tmp_path / "edged-1000"
    taken.mkdir(mode=0o777)
    os.chown(taken, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError) as info:
        prepare_socket_path(taken / "edged.sock")
    assert "api.socket" in str(info.value)
    assert f"owned by uid {OTHER_UID}" in str(info.value)


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "edged-1000"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="not a directory"):
        prepare_socket_path(link / "edged.sock")


def test_our_own_directory_and_a_sticky_shared_one_are_accepted(tmp_path: Path) -> None:
    ours = tmp_path / "run" / "edged"
    prepare_socket_path(ours / "edged.sock")  # created
    assert ours.is_dir()
    prepare_socket_path(ours / "edged.sock")  # and taken again
    sticky = tmp_path / "shared"
    sticky.mkdir()
    sticky.chmod(0o1777)
    prepare_socket_path(sticky / "edged.sock")


@pytest.mark.parametrize("mode", [0o777, 0o757, 0o770])
def test_our_own_directory_writable_by_others_and_not_sticky_is_refused(tmp_path: Path, mode: int) -> None:
    """issue 17 (7): there anyone could replace the socket with their own; only a sticky one (like /tmp) is safe."""
    shared = tmp_path / "run"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(ConfigError) as info:
        prepare_socket_path(shared / "edged.sock")
    assert f"api.socket = '{shared}'" in str(info.value)
    assert "writable by others and not sticky" in str(info.value)


def test_the_http_socket_is_checked_the_same_way_and_named_as_its_own_key(tmp_path: Path) -> None:
    shared = tmp_path / "run"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError) as info:
        prepare_socket_path(shared / "edged-http.sock", "http.socket")
    assert f"http.socket = '{shared}'" in str(info.value)
    assert "api.socket" not in str(info.value)
