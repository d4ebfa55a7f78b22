"""Reading config and profile files: TOML in, validated models out, ConfigError naming key, value and reason."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edged.config.base import config_error
from edged.config.daemon import DaemonConfig
from edged.config.profile import DeviceProfile, deep_merge
from edged.errors import ConfigError

MAX_FILE_BYTES = 1024 * 1024


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable, oversized or malformed file is a ConfigError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", str(path), exc.strerror or str(exc))]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(str(path), [("(file)", len(data), f"larger than {MAX_FILE_BYTES} bytes")])
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [("(syntax)", str(path), str(exc))]) from None


def parse_config(raw: Mapping[str, Any], source: str = "config") -> DaemonConfig:
    try:
        return DaemonConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(source, exc) from None


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> DaemonConfig:
    """The daemon config from `path` (or defaults), with command-line overrides merged on top."""
    raw = read_toml(path) if path is not None else {}
    if overrides:
        raw = deep_merge(raw, overrides)
    return parse_config(raw, str(path) if path else "config")


def parse_profile(raw: Mapping[str, Any], source: str = "profile") -> DeviceProfile:
    try:
        return DeviceProfile.model_validate(raw)
    except ValidationError as exc:
        raise config_error(source, exc) from None


def load_profile(path: Path) -> DeviceProfile:
    return parse_profile(read_toml(path), str(path))


def effective_profile(config: DaemonConfig, layers: Sequence[DeviceProfile]) -> DeviceProfile:
    """Merge the config's sections with profile layers (lowest first), then validate the result as one."""
    merged: dict[str, Any] = config.profile_sections()
    for layer in layers:
        merged = deep_merge(merged, layer.model_dump(exclude_unset=True))
    return parse_profile(merged, "effective profile")
