"""Routing policy: device load, the learned pre-generation router, the AUTO score and cascade, the cloud
budget, and the one decision function (`edged.routing.decision.decide`). See docs/routing.md."""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.routing.budget import BudgetStatus as BudgetStatus
    from edged.routing.budget import CloudBudget as CloudBudget
    from edged.routing.budget import estimated_tokens as estimated_tokens
    from edged.routing.cascade import CascadeMonitor as CascadeMonitor
    from edged.routing.cascade import HoldBack as HoldBack
    from edged.routing.decision import Link as Link
    from edged.routing.decision import Route as Route
    from edged.routing.decision import RouteDecision as RouteDecision
    from edged.routing.decision import RouteInputs as RouteInputs
    from edged.routing.decision import decide as decide
    from edged.routing.decision import judge_confidence as judge_confidence
    from edged.routing.load import EngineLoad as EngineLoad
    from edged.routing.load import LoadSampler as LoadSampler
    from edged.routing.load import LoadSnapshot as LoadSnapshot
    from edged.routing.load import PsutilSource as PsutilSource
    from edged.routing.load import SystemReading as SystemReading
    from edged.routing.load import SystemSource as SystemSource
    from edged.routing.load import over_limits as over_limits
    from edged.routing.router import PromptRouter as PromptRouter
    from edged.routing.router import effective_weights as effective_weights
    from edged.routing.router import load_router as load_router
    from edged.routing.score import SIGNALS as SIGNALS
    from edged.routing.score import auto_score as auto_score
    from edged.routing.score import logit as logit
    from edged.routing.score import signal_values as signal_values

EXPORTS = {
    "auto_score": "score",
    "BudgetStatus": "budget",
    "CascadeMonitor": "cascade",
    "CloudBudget": "budget",
    "decide": "decision",
    "effective_weights": "router",
    "EngineLoad": "load",
    "estimated_tokens": "budget",
    "HoldBack": "cascade",
    "judge_confidence": "decision",
    "Link": "decision",
    "load_router": "router",
    "LoadSampler": "load",
    "LoadSnapshot": "load",
    "logit": "score",
    "over_limits": "load",
    "PromptRouter": "router",
    "PsutilSource": "load",
    "Route": "decision",
    "RouteDecision": "decision",
    "RouteInputs": "decision",
    "signal_values": "score",
    "SIGNALS": "score",
    "SystemReading": "load",
    "SystemSource": "load",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
