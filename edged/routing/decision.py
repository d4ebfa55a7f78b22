"""The routing decision: one pure function of explicit inputs, returning the route and the reasons for it.

`decide()` is called before generation (no confidence yet) and, for AUTO and PREFER_LOCAL requests
answered locally, again after generation or after the cascade's first k tokens (with the AUTO score). Its
reasons are short, stable, machine-readable strings, in order of evaluation; they go into provenance, metrics
and the audit log unchanged:

    mode=AUTO                                  always first
    privacy=local_only                         the data policy keeps this request on the device
    over_limit:cpu_percent                     one per device limit exceeded (AUTO, before generation)
    router_score=0.31<threshold=0.50           pre-generation router (AUTO); router=no_cloud_link without a
                                               broker (nothing to route to, so none is loaded),
                                               router=unavailable without one otherwise,
                                               router=other_local_model when it is signal-only
    confidence=0.22<threshold=0.50             AUTO score of the finished local answer
    confidence@8=0.05<threshold=0.15           AUTO score after the cascade's first 8 streamed tokens
    link_disabled | link_down                  the cloud cannot be reached
    budget_exhausted:tokens_per_hour           the first spent budget window

The rules (docs/routing.md has the full table):
  LOCAL_ONLY                  always local.
  privacy forbids the cloud   local (PREFER_CLOUD: degraded); CLOUD_ONLY is refused (SensitiveDataBlocked).
  CLOUD_ONLY, PREFER_CLOUD    cloud, unless the link or budget blocks it: PREFER_CLOUD then answers locally,
                              degraded; CLOUD_ONLY is refused (NoCloudLink, CloudUnavailable,
                              BudgetExhausted).
  AUTO                        cloud when the device is beyond a limit or the router score is below threshold
                              (before generation), or the answer's AUTO score is below threshold (after);
                              else local. Blocked by link or budget, it stays local (degraded, unless no
                              broker is configured at all).
  PREFER_LOCAL                local; after generation like AUTO's confidence rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edged.config.limits import LoadLimits
from edged.domain import Mode
from edged.errors import BudgetExhausted, CloudUnavailable, EdgedError, NoCloudLink, SensitiveDataBlocked
from edged.routing.load import LoadSnapshot, over_limits


class Route(StrEnum):
    LOCAL = "LOCAL"
    CLOUD = "CLOUD"
    REFUSE = "REFUSE"  # the request cannot be served where its mode allows; `refusal` says why


class Link(StrEnum):
    UP = "up"
    DOWN = "down"
    DISABLED = "disabled"  # no broker configured


@dataclass(frozen=True, slots=True)
class RouteInputs:
    """Everything a routing decision depends on; nothing else is read."""

    mode: Mode
    cloud_allowed: bool  # the privacy verdict: may this request's data leave the device?
    load: LoadSnapshot
    limits: LoadLimits
    link: Link
    budget_exhausted: str | None  # the first spent budget window, or None
    router_score: float | None  # None when no router ran
    router_threshold: float  # the request's override, else the profile's
    confidence: float | None = None  # AUTO score of the local answer (after generation or k tokens)
    confidence_threshold: float = 0.5
    router_signal_only: bool = False  # the router was trained for another local model (router.py)
    cascade_tokens: int | None = None  # set when `confidence` covers only the first k tokens of a stream


@dataclass(frozen=True, slots=True)
class RouteDecision:
    route: Route
    reasons: tuple[str, ...]
    degraded: bool = False  # the side the policy preferred could not answer
    refusal: type[EdgedError] | None = None  # set with Route.REFUSE

    def error(self) -> EdgedError:
        """The domain error to raise for a refused request (its message is the reason list)."""
        if self.refusal is None:
            raise ValueError(f"route {self.route} is not a refusal")
        message = "; ".join(self.reasons)
        if self.refusal is SensitiveDataBlocked:
            return SensitiveDataBlocked("sensitive", message)
        return self.refusal(message)


def _compare(name: str, value: float, threshold: float) -> str:
    sign = "<" if value < threshold else ">="
    return f"{name}={value:.2f}{sign}threshold={threshold:.2f}"


def _auto_wants_cloud(inputs: RouteInputs, reasons: list[str]) -> bool:
    wants = False
    if inputs.confidence is None:  # before generation: device load first, then the router
        beyond = over_limits(inputs.load, inputs.limits)
        reasons.extend(f"over_limit:{name}" for name in beyond)
        wants = bool(beyond)
    if inputs.router_signal_only:
        reasons.append("router=other_local_model")
    elif inputs.router_score is None:
        reasons.append("router=no_cloud_link" if inputs.link is Link.DISABLED else "router=unavailable")
    else:
        reasons.append(_compare("router_score", inputs.router_score, inputs.router_threshold))
        wants = wants or (inputs.confidence is None and inputs.router_score < inputs.router_threshold)
    return _confidence_wants_cloud(inputs, reasons) or wants


def _confidence_wants_cloud(inputs: RouteInputs, reasons: list[str]) -> bool:
    if inputs.confidence is None:
        return False
    unsure, reason = judge_confidence(inputs.confidence, inputs.confidence_threshold, inputs.cascade_tokens)
    reasons.append(reason)
    return unsure


def judge_confidence(score: float, threshold: float, tokens: int | None = None) -> tuple[bool, str]:
    """The confidence rule on its own: whether an answer's AUTO score is below its threshold, and the reason
    (`confidence=...`, or `confidence@k=...` for a score over the first k streamed tokens).

    `decide()` applies it after generation; the pipeline's judge step calls it directly for an answer that
    could still be handed to the cloud (mode, privacy, link and budget were decided before generation)."""
    name = "confidence" if tokens is None else f"confidence@{tokens}"
    return score < threshold, _compare(name, score, threshold)


def _blocker(inputs: RouteInputs) -> tuple[str, type[EdgedError]] | None:
    if inputs.link is Link.DISABLED:
        return "link_disabled", NoCloudLink
    if inputs.link is Link.DOWN:
        return "link_down", CloudUnavailable
    if inputs.budget_exhausted is not None:
        return f"budget_exhausted:{inputs.budget_exhausted}", BudgetExhausted
    return None


def decide(inputs: RouteInputs) -> RouteDecision:
    """Where this request is answered, and why (see the module docstring for the rules)."""
    mode = inputs.mode
    reasons = [f"mode={mode.value}"]
    if mode is Mode.LOCAL_ONLY:
        return RouteDecision(Route.LOCAL, tuple(reasons))
    if not inputs.cloud_allowed:
        reasons.append("privacy=local_only")
        if mode is Mode.CLOUD_ONLY:
            return RouteDecision(Route.REFUSE, tuple(reasons), refusal=SensitiveDataBlocked)
        return RouteDecision(Route.LOCAL, tuple(reasons), degraded=mode is Mode.PREFER_CLOUD)
    if not _wants_cloud(inputs, reasons):
        return RouteDecision(Route.LOCAL, tuple(reasons))
    return _towards_cloud(inputs, reasons)


def _wants_cloud(inputs: RouteInputs, reasons: list[str]) -> bool:
    if inputs.mode is Mode.AUTO:
        return _auto_wants_cloud(inputs, reasons)
    if inputs.mode is Mode.PREFER_LOCAL:
        return _confidence_wants_cloud(inputs, reasons)
    return True  # PREFER_CLOUD, CLOUD_ONLY


def _towards_cloud(inputs: RouteInputs, reasons: list[str]) -> RouteDecision:
    blocked = _blocker(inputs)
    if blocked is None:
        return RouteDecision(Route.CLOUD, tuple(reasons))
    reason, error = blocked
    reasons.append(reason)
    if inputs.mode is Mode.CLOUD_ONLY:
        return RouteDecision(Route.REFUSE, tuple(reasons), refusal=error)
    degraded = inputs.mode is Mode.PREFER_CLOUD or inputs.link is not Link.DISABLED
    return RouteDecision(Route.LOCAL, tuple(reasons), degraded=degraded)
