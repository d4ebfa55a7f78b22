"""Proto <-> domain conversion. Decoding validates every request field and names the field, value and limit."""

from __future__ import annotations

import dataclasses
import math
import re
import time
import uuid
from dataclasses import dataclass

from edged.domain import (
    ROLES,
    Answer,
    ConfidenceSummary,
    InferenceRequest,
    Message,
    Mode,
    Provenance,
    SamplingParams,
    Source,
    Timing,
    Usage,
)
from edged.engine.grammar import json_schema_grammar
from edged.errors import InvalidRequest, ModelNotFound
from edged.service.snapshot import DaemonStatus
from edged.v1 import inference_pb2 as pb

MAX_MESSAGES = 256
MAX_STOP_STRINGS = 8
MAX_STOP_LENGTH = 64
MAX_DATA_CLASSES = 16
MAX_DATA_CLASS_LENGTH = 64
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")

MODES = {
    pb.AUTO: Mode.AUTO,
    pb.LOCAL_ONLY: Mode.LOCAL_ONLY,
    pb.PREFER_LOCAL: Mode.PREFER_LOCAL,
    pb.PREFER_CLOUD: Mode.PREFER_CLOUD,
    pb.CLOUD_ONLY: Mode.CLOUD_ONLY,
}
_SOURCES = {Source.LOCAL: pb.LOCAL, Source.CLOUD: pb.CLOUD}


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """The bounds a request is checked against (from the effective profile and the loaded models)."""

    max_tokens_cap: int
    default_max_tokens: int
    default_temperature: float
    models: frozenset[str]


def decode_request(
    msg: pb.GenerateRequest, limits: RequestLimits, deadline: float | None
) -> InferenceRequest:
    """Validate a GenerateRequest; raises InvalidRequest or ModelNotFound."""
    return InferenceRequest(
        request_id=_request_id(msg.request_id),
        messages=_messages(msg),
        params=_sampling(msg, limits),
        model=_model(msg.model, limits),
        mode=_mode(msg.mode),
        sensitive=msg.sensitive,
        data_classes=_data_classes(list(msg.data_classes)),
        router_threshold=_unit_interval("router_threshold", msg.router_threshold)
        if msg.HasField("router_threshold")
        else None,
        received_at=time.monotonic(),
        deadline=deadline,
    )


def _request_id(value: str) -> str:
    if not value:
        return uuid.uuid4().hex
    if not _REQUEST_ID.match(value):
        raise InvalidRequest("request_id", f"{value[:40]!r} must be 1-128 characters of [A-Za-z0-9_.:-]")
    return value


def _messages(msg: pb.GenerateRequest) -> tuple[Message, ...]:
    if msg.prompt and msg.messages:
        raise InvalidRequest("prompt", "set either prompt or messages, not both")
    if msg.prompt:
        if not msg.prompt.strip():
            raise InvalidRequest("prompt", "is blank")
        return (Message("user", msg.prompt),)
    if not msg.messages:
        raise InvalidRequest("prompt", "empty: set prompt or messages")
    if len(msg.messages) > MAX_MESSAGES:
        raise InvalidRequest("messages", f"{len(msg.messages)} messages, the limit is {MAX_MESSAGES}")
    out = []
    for i, m in enumerate(msg.messages):
        if m.role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role", f"{m.role[:40]!r} is not one of {', '.join(ROLES)}")
        if not m.content.strip():
            raise InvalidRequest(f"messages[{i}].content", "is empty")
        out.append(Message(m.role, m.content))
    return tuple(out)


def _sampling(msg: pb.GenerateRequest, limits: RequestLimits) -> SamplingParams:
    max_tokens = msg.max_tokens if msg.HasField("max_tokens") else limits.default_max_tokens
    if not 1 <= max_tokens <= limits.max_tokens_cap:
        raise InvalidRequest("max_tokens", f"{max_tokens} is outside 1..{limits.max_tokens_cap}")
    temperature = msg.temperature if msg.HasField("temperature") else limits.default_temperature
    if not (math.isfinite(temperature) and 0.0 <= temperature <= 2.0):
        raise InvalidRequest("temperature", f"{temperature} is outside 0..2")
    top_p = msg.top_p if msg.HasField("top_p") else 1.0
    if not (math.isfinite(top_p) and 0.0 < top_p <= 1.0):
        raise InvalidRequest("top_p", f"{top_p} is outside (0, 1]")
    stops = tuple(msg.stop)
    if len(stops) > MAX_STOP_STRINGS:
        raise InvalidRequest("stop", f"{len(stops)} stop strings, the limit is {MAX_STOP_STRINGS}")
    for i, stop in enumerate(stops):
        if not stop or len(stop) > MAX_STOP_LENGTH:
            raise InvalidRequest(f"stop[{i}]", f"length {len(stop)} is outside 1..{MAX_STOP_LENGTH}")
    schema = msg.json_schema or None
    if schema is not None:
        json_schema_grammar(schema)  # validates; the engine converts it again on its side of the queue
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=float(temperature),
        top_p=float(top_p),
        seed=msg.seed if msg.HasField("seed") else None,
        stop=stops,
        json_schema=schema,
    )


def _model(model: str, limits: RequestLimits) -> str | None:
    if not model:
        return None
    if model not in limits.models:
        known = ", ".join(sorted(limits.models)) or "none"
        raise ModelNotFound(f"model: unknown model {model[:64]!r} (served here: {known})")
    return model


def _mode(value: int) -> Mode:
    try:
        return MODES[value]  # type: ignore[index]
    except KeyError:
        raise InvalidRequest("mode", f"{value} is not a known Mode") from None


def _data_classes(values: list[str]) -> tuple[str, ...]:
    if len(values) > MAX_DATA_CLASSES:
        raise InvalidRequest("data_classes", f"{len(values)} classes, the limit is {MAX_DATA_CLASSES}")
    for i, value in enumerate(values):
        if not value or len(value) > MAX_DATA_CLASS_LENGTH:
            raise InvalidRequest(
                f"data_classes[{i}]", f"length {len(value)} is outside 1..{MAX_DATA_CLASS_LENGTH}"
            )
    return tuple(values)


def _unit_interval(field: str, value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidRequest(field, f"{value} is outside 0..1")
    return float(value)


# ----------------------------------------------------------------------------- encoding


def encode_confidence(c: ConfidenceSummary) -> pb.Confidence:
    return pb.Confidence(
        tokens=c.tokens,
        mean_logprob=c.mean_logprob,
        min_logprob=c.min_logprob,
        first_token_margin=c.first_token_margin,
        mean_margin=c.mean_margin,
        mean_entropy=c.mean_entropy,
        p10_logprob=c.p10_logprob,
        available=c.available,
    )


def encode_provenance(p: Provenance) -> pb.Provenance:
    msg = pb.Provenance(
        source=_SOURCES[p.source],
        model=p.model,
        confidence=encode_confidence(p.confidence),
        reasons=list(p.reasons),
        degraded=p.degraded,
        device_id=p.device_id,
        redacted=p.redacted,
        data_classes=list(p.data_classes),
        invented=dict(p.invented),
    )
    if p.router_score is not None:
        msg.router_score = p.router_score
    return msg


def encode_answer(answer: Answer) -> pb.GenerateResponse:
    return pb.GenerateResponse(
        request_id=answer.request_id,
        text=answer.text,
        finish_reason=answer.finish_reason,
        provenance=encode_provenance(answer.provenance),
        usage=pb.Usage(
            prompt_tokens=answer.usage.prompt_tokens, completion_tokens=answer.usage.completion_tokens
        ),
        timing=pb.Timing(
            queue_ms=answer.timing.queue_ms,
            time_to_first_token_ms=answer.timing.time_to_first_token_ms,
            total_ms=answer.timing.total_ms,
        ),
    )


def encode_last_chunk(answer: Answer) -> pb.GenerateChunk:
    full = encode_answer(answer)
    return pb.GenerateChunk(
        request_id=answer.request_id,
        done=True,
        finish_reason=full.finish_reason,
        provenance=full.provenance,
        usage=full.usage,
        timing=full.timing,
    )


# ----------------------------------------------------------------------------- decoding answers (edged.client)


def decode_provenance(msg: pb.Provenance) -> Provenance:
    c = msg.confidence
    return Provenance(
        source=Source.CLOUD if msg.source == pb.CLOUD else Source.LOCAL,
        model=msg.model,
        confidence=ConfidenceSummary(
            tokens=c.tokens,
            mean_logprob=c.mean_logprob,
            min_logprob=c.min_logprob,
            first_token_margin=c.first_token_margin,
            mean_margin=c.mean_margin,
            mean_entropy=c.mean_entropy,
            p10_logprob=c.p10_logprob,
            available=c.available,
        ),
        reasons=tuple(msg.reasons),
        degraded=msg.degraded,
        device_id=msg.device_id,
        router_score=msg.router_score if msg.HasField("router_score") else None,
        redacted=msg.redacted,
        data_classes=tuple(msg.data_classes),
        invented=dict(sorted(msg.invented.items())),
    )


def decode_answer(msg: pb.GenerateResponse | pb.GenerateChunk, text: str) -> Answer:
    """A GenerateResponse (or a stream's last chunk, with the streamed text) as the domain Answer."""
    return Answer(
        request_id=msg.request_id,
        text=text,
        finish_reason=msg.finish_reason,
        provenance=decode_provenance(msg.provenance),
        usage=Usage(msg.usage.prompt_tokens, msg.usage.completion_tokens),
        timing=Timing(msg.timing.queue_ms, msg.timing.time_to_first_token_ms, msg.timing.total_ms),
    )


def encode_status(s: DaemonStatus) -> pb.StatusResponse:
    busy = sum(m.slots_busy for m in s.models if m.loaded)
    total = sum(m.slots_total for m in s.models if m.loaded)
    msg = pb.StatusResponse(
        device_id=s.device_id,
        version=s.version,
        state=s.state,
        models=[pb.ModelStatus(**dataclasses.asdict(m)) for m in s.models],
        slots_busy=busy,
        slots_free=total - busy,
        queue_depth=sum(m.queue_depth for m in s.models),
        link=pb.LinkStatus(**dataclasses.asdict(s.link)),
        budget=pb.BudgetStatus(**dataclasses.asdict(s.budget)),
        profile=pb.ProfileStatus(**dataclasses.asdict(s.profile)),
        uptime_s=s.uptime_s,
        requests_local=s.requests_local,
        requests_cloud=s.requests_cloud,
        http_listeners=list(s.http_listeners),
    )
    if s.load is not None:
        load = dataclasses.asdict(s.load)
        load["over_limits"] = list(s.load.over_limits)
        msg.load.CopyFrom(pb.LoadStatus(**{k: v for k, v in load.items() if v is not None}))
    return msg
