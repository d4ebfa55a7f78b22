"""The local runtime: llama.cpp models served with continuous batching and per-token confidence signals."""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.engine.cpu import read_cpu_info as read_cpu_info
    from edged.engine.grammar import json_schema_grammar as json_schema_grammar
    from edged.engine.jobs import ConfidenceMonitor as ConfidenceMonitor
    from edged.engine.jobs import EngineEvent as EngineEvent
    from edged.engine.jobs import EngineStats as EngineStats
    from edged.engine.jobs import ErrorEvent as ErrorEvent
    from edged.engine.jobs import FinishEvent as FinishEvent
    from edged.engine.jobs import GenerationJob as GenerationJob
    from edged.engine.jobs import TokenEvent as TokenEvent
    from edged.engine.local_answerer import LocalAnswerer as LocalAnswerer
    from edged.engine.scheduler import LlamaEngine as LlamaEngine
    from edged.engine.selftest import ensure_decodes as ensure_decodes
    from edged.engine.selftest import run_selftest as run_selftest

EXPORTS = {
    "ConfidenceMonitor": "jobs",
    "EngineEvent": "jobs",
    "EngineStats": "jobs",
    "ensure_decodes": "selftest",
    "ErrorEvent": "jobs",
    "FinishEvent": "jobs",
    "GenerationJob": "jobs",
    "json_schema_grammar": "grammar",
    "LlamaEngine": "scheduler",
    "LocalAnswerer": "local_answerer",
    "read_cpu_info": "cpu",
    "run_selftest": "selftest",
    "TokenEvent": "jobs",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
