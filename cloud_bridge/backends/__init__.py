"""Backends by `type`: a registry of import paths, so a heavy library is imported only when configured."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from cloud_bridge.backends.base import Backend, BackendDone, BackendEvent, BackendJob
from cloud_bridge.config import BackendSettings
from edged.errors import ConfigError

BACKENDS: dict[str, str] = {
    "gguf": "cloud_bridge.backends.gguf:GgufBackend",
    "openai": "cloud_bridge.backends.openai:OpenAIBackend",
    "sleep": "cloud_bridge.backends.sleep:SleepBackend",
    "echo": "cloud_bridge.backends.echo:EchoBackend",  # test and demo backend
}


def create_backend(settings: BackendSettings, state_dir: Path) -> Backend:
    """The backend `settings.type` names, built from its settings (nothing is loaded until start())."""
    target = BACKENDS.get(settings.type)
    if target is None:
        raise ConfigError("backend", [("backend.type", settings.type, f"unknown; one of {sorted(BACKENDS)}")])
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            "backend", [("backend.type", settings.type, f"cannot import {module_name}: {exc}")]
        ) from None
    factory: Any = getattr(module, class_name)
    backend: Backend = factory(settings, state_dir)
    return backend


__all__ = ["BACKENDS", "Backend", "BackendDone", "BackendEvent", "BackendJob", "create_backend"]
