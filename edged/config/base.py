"""The base of every config and profile model, and the translation of pydantic's errors into ConfigError."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from edged.errors import ConfigError


class StrictModel(BaseModel):
    """A config section: unknown keys are rejected, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class KeyRuleError(ValueError):
    """A cross-field rule broken by one key of a section: raise it from a model validator and the ConfigError
    names that key (`engine.slots`) and its value, not the whole section."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.value = value


_REASONS = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def config_error(source: str, exc: ValidationError, prefix: str = "") -> ConfigError:
    """Turn a pydantic ValidationError into a ConfigError naming each key (dotted path), value and reason."""
    problems: list[tuple[str, object, str]] = []
    for err in exc.errors(include_url=False):
        loc: tuple[object, ...] = (prefix, *err["loc"])
        reason = _REASONS.get(err["type"], err["msg"].removeprefix("Value error, "))
        value: Any = err.get("input")
        if err["type"] == "missing":
            value = None
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, KeyRuleError):
            loc = (*loc, cause.key)
            value = cause.value
        key = ".".join(str(part) for part in loc if part != "")
        problems.append((key or "(document)", _short(value), reason))
    return ConfigError(source, problems)


def _short(value: object, limit: int = 80) -> object:
    """Keep error messages readable when a whole section was the offending value."""
    text = repr(value)
    if len(text) <= limit:
        return value
    return text[: limit - 3] + "..."
