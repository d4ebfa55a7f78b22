"""OpenAI JSON <-> edged: request bodies become the same GenerateRequest the gRPC API decodes, answers become
OpenAI's response and chunk objects with an `edged` provenance object. No decisions are made here.

A body is checked against a strict model: edged's own controls are extension fields (what an OpenAI client sends
through `extra_body`); the standard OpenAI fields edged does not implement are accepted only where they change
nothing (`user`, `n = 1`, `logprobs = false`, zero penalties, ...) and refused with the field's name otherwise;
any other unknown field is refused, so a typo is not silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edged.domain import Answer, Provenance
from edged.errors import InvalidRequest
from edged.v1 import inference_pb2 as pb

INT32_MAX = 2**31 - 1  # GenerateRequest.max_tokens is an int32
UINT32_MAX = 2**32 - 1  # GenerateRequest.seed is a uint32
MAX_TIMEOUT_S = 86_400.0
# pydantic names the member of a union that failed (`stop.str`, `stop.list[str]`): not part of the field's name
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|[a-z_-]+\[.*\])$")
_MODES = {name.lower().replace("_", "-"): value for name, value in pb.Mode.items()}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatMessageIn(_Body):
    role: str
    content: str
    name: str | None = None  # accepted and ignored: edged's chat templates carry no speaker names

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        """A list of content parts is joined when every part is text; images and audio are refused."""
        if not isinstance(value, list):
            return value
        texts = []
        for part in value:
            if not (
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            ):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ValueError(f"only text content parts are supported, not {str(kind)[:40]!r}")
            texts.append(part["text"])
        return "".join(texts)


class StreamOptions(_Body):
    include_usage: bool = False


class JsonSchemaFormat(_Body):
    name: str = "answer"
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class _Common(_Body):
    """The fields both endpoints share: sampling, streaming and edged's extensions."""

    model: str = ""
    max_tokens: Annotated[int, Field(ge=-INT32_MAX, le=INT32_MAX)] | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: Annotated[int, Field(ge=0, le=UINT32_MAX)] | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # accepted where they change nothing
    user: str | None = None
    n: Literal[1] | None = None
    frequency_penalty: Literal[0] | None = None
    presence_penalty: Literal[0] | None = None
    logit_bias: Annotated[dict[str, float], Field(max_length=0)] | None = None
    # edged's extensions
    mode: str | None = None
    sensitive: bool = False
    data_classes: list[str] = []
    router_threshold: float | None = None
    request_id: str = ""
    timeout: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] | None = None

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str | None) -> str | None:
        if value is not None and value.lower().replace("_", "-") not in _MODES:
            raise ValueError(f"{value[:40]!r} is not one of {', '.join(sorted(_MODES))}")
        return value

    def wire_field(self, field: str) -> str:
        return field

    def to_proto(self) -> pb.GenerateRequest:
        msg = pb.GenerateRequest(
            model=self.model,
            stop=[self.stop] if isinstance(self.stop, str) else list(self.stop or ()),
            mode=_MODES[self.mode.lower().replace("_", "-")] if self.mode else pb.AUTO,
            sensitive=self.sensitive,
            data_classes=self.data_classes,
            request_id=self.request_id,
        )
        for name in ("max_tokens", "temperature", "top_p", "seed", "router_threshold"):
            value = getattr(self, name)
            if value is not None:
                setattr(msg, name, value)
        return msg

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionBody(_Common):
    messages: list[ChatMessageIn]
    max_completion_tokens: Annotated[int, Field(ge=-INT32_MAX, le=INT32_MAX)] | None = None
    response_format: ResponseFormat | None = None
    logprobs: Literal[False] | None = None
    top_logprobs: Literal[0] | None = None
    tools: Annotated[list[Any], Field(max_length=0)] | None = None
    tool_choice: Literal["none"] | None = None
    parallel_tool_calls: bool | None = None
    store: Literal[False] | None = None
    metadata: dict[str, str] | None = None

    def wire_field(self, field: str) -> str:
        """The name of the field the caller sent, for an error naming a GenerateRequest field."""
        if field == "max_tokens" and self.max_tokens is None and self.max_completion_tokens is not None:
            return "max_completion_tokens"
        if field == "prompt":
            return "messages"
        return "response_format.json_schema.schema" if field == "json_schema" else field

    def to_proto(self) -> pb.GenerateRequest:
        msg = super().to_proto()
        if self.max_completion_tokens is not None:
            if self.max_tokens is not None and self.max_tokens != self.max_completion_tokens:
                raise InvalidRequest(
                    "max_completion_tokens",
                    f"{self.max_completion_tokens} differs from max_tokens {self.max_tokens}: set one",
                )
            msg.max_tokens = self.max_completion_tokens
        msg.messages.extend(pb.ChatMessage(role=m.role, content=m.content) for m in self.messages)
        msg.json_schema = _schema_text(self.response_format)
        return msg


class CompletionBody(_Common):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    echo: Literal[False] | None = None
    suffix: None = None
    best_of: Literal[1] | None = None
    logprobs: Literal[0] | None = None

    def to_proto(self) -> pb.GenerateRequest:
        msg = super().to_proto()
        msg.prompt = self.prompt if isinstance(self.prompt, str) else self.prompt[0]
        return msg


B = TypeVar("B", bound="_Common")


def _schema_text(fmt: ResponseFormat | None) -> str:
    if fmt is None or fmt.type == "text":
        return ""
    if fmt.type == "json_object":
        return json.dumps({"type": "object"})
    if fmt.json_schema is None:
        raise InvalidRequest("response_format.json_schema", "is required when type is json_schema")
    return json.dumps(fmt.json_schema.schema_)


def parse_body(kind: type[B], raw: bytes) -> B:
    """Validate a request body; raises InvalidRequest naming the first bad field, its value and the rule."""
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest("body", f"is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest("body", f"must be a JSON object, not {type(document).__name__}")
    try:
        return kind.model_validate(document)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidRequest:
    err = exc.errors(include_url=False)[0]
    loc = [part for part in err["loc"] if not _UNION_TAG.match(str(part))]
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    if err["type"] == "extra_forbidden":
        return InvalidRequest(field, "is not a field edged accepts")
    value = repr(err.get("input"))[:60]
    reason = err["msg"].removeprefix("Value error, ")
    if err["type"] in ("literal_error", "too_long", "none_required"):
        reason = f"edged does not support this value ({reason})"
    return InvalidRequest(field, f"{value}: {reason}")


# ----------------------------------------------------------------------------- encoding


def provenance_object(p: Provenance, answer: Answer | None = None) -> dict[str, Any]:
    """The `edged` object: where the answer was produced and why (and, with the answer, its timing)."""
    doc = dataclasses.asdict(p)
    doc["source"] = p.source.value
    if answer is not None:
        doc["request_id"] = answer.request_id
        doc["timing"] = dataclasses.asdict(answer.timing)
    return doc


def provenance_headers(answer: Answer) -> dict[str, str]:
    p = answer.provenance
    return {
        "X-Edged-Request-Id": answer.request_id,
        "X-Edged-Source": p.source.value,
        "X-Edged-Model": p.model,
        "X-Edged-Degraded": "true" if p.degraded else "false",
        "X-Edged-Redacted": "true" if p.redacted else "false",
        "X-Edged-Reasons": ",".join(p.reasons),
    }


def usage_object(answer: Answer) -> dict[str, int]:
    u = answer.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }


class Envelope:
    """The id, object type and creation time every response and chunk of one request repeats."""

    def __init__(self, chat: bool, request_id: str, model: str) -> None:
        self.chat = chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{request_id}"
        self.model = model
        self.created = int(time.time())

    def _base(self, object_type: str, model: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": object_type, "created": self.created, "model": model or self.model}

    def response(self, answer: Answer) -> dict[str, Any]:
        if self.chat:
            choice: dict[str, Any] = {"message": {"role": "assistant", "content": answer.text}}
        else:
            choice = {"text": answer.text}
        choice |= {"index": 0, "finish_reason": answer.finish_reason, "logprobs": None}
        return self._base("chat.completion" if self.chat else "text_completion", answer.provenance.model) | {
            "choices": [choice],
            "usage": usage_object(answer),
            "edged": provenance_object(answer.provenance, answer),
        }

    def chunk(self, text: str, *, first: bool = False, finish: Answer | None = None) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
            if finish is not None and not text:
                delta = {}
            choice: dict[str, Any] = {"delta": delta}
        else:
            choice = {"text": text}
        choice |= {"index": 0, "finish_reason": finish.finish_reason if finish else None, "logprobs": None}
        doc = self._base("chat.completion.chunk" if self.chat else "text_completion", self._model(finish))
        doc["choices"] = [choice]
        if finish is not None:
            doc["edged"] = provenance_object(finish.provenance, finish)
        return doc

    def usage_chunk(self, answer: Answer) -> dict[str, Any]:
        doc = self._base("chat.completion.chunk" if self.chat else "text_completion", answer.provenance.model)
        return doc | {
            "choices": [],
            "usage": usage_object(answer),
            "edged": provenance_object(answer.provenance, answer),
        }

    def _model(self, answer: Answer | None) -> str:
        return answer.provenance.model if answer is not None else self.model


def error_object(message: str, kind: str, code: str, param: str | None) -> dict[str, Any]:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
