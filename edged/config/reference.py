"""The configuration reference, generated from the schema so the docs cannot drift from the code.

    python -m edged.config.reference > docs/configuration-reference.md

tests/test_config_reference.py fails when the committed file differs from what the schema gives.
"""

from __future__ import annotations

import enum
import sys
import types
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from edged.config.daemon import DaemonConfig
from edged.config.profile import PROFILE_SECTIONS, DeviceProfile

_BOUNDS = ((Ge, ">=", "ge"), (Gt, ">", "gt"), (Le, "<=", "le"), (Lt, "<", "lt"))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _metadata(info: FieldInfo) -> list[Any]:
    """Constraints on the field, including those inside an optional's Annotated arm."""
    found = list(info.metadata)
    for arm in typing.get_args(info.annotation):
        if typing.get_origin(arm) is Annotated:
            for meta in typing.get_args(arm)[1:]:
                found.extend(meta.metadata if isinstance(meta, FieldInfo) else [meta])
    return found


def _bounds(info: FieldInfo) -> str:
    parts = []
    for meta in _metadata(info):
        for kind, symbol, attr in _BOUNDS:
            if isinstance(meta, kind):
                parts.append(f"{symbol} {getattr(meta, attr)}")
        if isinstance(meta, MinLen):
            parts.append(f"length >= {meta.min_length}")
        if isinstance(meta, MaxLen):
            parts.append(f"length <= {meta.max_length}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            parts.append(f"pattern `{pattern}`")
    return ", ".join(parts)


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "(computed)"
    if info.default is PydanticUndefined:
        return "(required)"
    value = info.default
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, BaseModel):
        return "(table)"
    return f"`{value!r}`" if value is not None else "unset"


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " / ".join(repr(arg) for arg in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if annotation is type(None):
        return "unset"
    return getattr(annotation, "__name__", str(annotation))


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str, str, str]]:
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        nested = _nested_model(info.annotation)
        if nested is not None:
            yield from rows(nested, f"{key}.")
            continue
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        kind = _type_name(info.annotation).replace("|", "\\|")
        yield key, kind, _default(info), _bounds(info).replace("|", "\\|"), description


def _table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| key | type | default | bounds | meaning |", "| --- | --- | --- | --- | --- |"]
    for key, kind, default, bounds, description in rows(model):
        if key.split(".")[0] in skip:
            continue
        lines.append(f"| `{key}` | {kind} | {default} | {bounds} | {description} |")
    return lines


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the schema by `python -m edged.config.reference`; do not edit by hand.",
        "Unknown keys are rejected; a bad value is reported with its key, the value and the reason.",
        "",
        "## Daemon config (`edged serve --config FILE`, `edged check-config FILE`)",
        "",
        "The profile sections ("
        + ", ".join(f"`[{s}]`" for s in PROFILE_SECTIONS)
        + ") may also appear here as "
        "the device's defaults; a profile overrides them key by key.",
        "",
        *_table(DaemonConfig, skip=PROFILE_SECTIONS),
        "",
        "## Device profile (`edged serve --profile FILE`, pushed by `edged-fleet push`)",
        "",
        *_table(DeviceProfile),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
