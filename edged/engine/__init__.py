"""The local runtime: llama.cpp models served with continuous batching and per-token confidence signals."""

from edged.engine.jobs import (
    ConfidenceMonitor,
    EngineEvent,
    EngineStats,
    ErrorEvent,
    FinishEvent,
    GenerationJob,
    TokenEvent,
)
from edged.engine.scheduler import LlamaEngine

__all__ = [
    "ConfidenceMonitor",
    "EngineEvent",
    "EngineStats",
    "ErrorEvent",
    "FinishEvent",
    "GenerationJob",
    "LlamaEngine",
    "TokenEvent",
]
