"""Default locations, following systemd's directory variables when the unit sets them."""

from __future__ import annotations

import os
from pathlib import Path

SOCKET_NAME = "edged.sock"


def _is_root() -> bool:
    return os.geteuid() == 0


def default_runtime_dir() -> Path:
    """$RUNTIME_DIRECTORY (systemd), else /run/edged as root, else a per-user runtime directory."""
    if env := os.environ.get("RUNTIME_DIRECTORY"):
        return Path(env.split(":")[0])
    if _is_root():
        return Path("/run/edged")
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(xdg) / "edged"
    # per-user; the server creates it 0750 and refuses it if another user owns it (created first to take it over)
    return Path(f"/tmp/edged-{os.geteuid()}")  # noqa: S108


def default_socket_path() -> Path:
    return default_runtime_dir() / SOCKET_NAME


def default_state_dir() -> Path:
    """$STATE_DIRECTORY (systemd), else /var/lib/edged as root, else ~/.local/state/edged."""
    if env := os.environ.get("STATE_DIRECTORY"):
        return Path(env.split(":")[0])
    if _is_root():
        return Path("/var/lib/edged")
    return Path.home() / ".local" / "state" / "edged"


def credentials_dir() -> Path | None:
    """$CREDENTIALS_DIRECTORY, set by systemd's LoadCredential=."""
    env = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(env) if env else None
