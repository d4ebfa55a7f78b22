"""Rendering a conversation into a prompt with the model's own Jinja chat template (sandboxed)."""

from __future__ import annotations

from collections.abc import Sequence

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edged.domain import Message
from edged.errors import InvalidRequest, ModelError


def _raise(message: str) -> None:
    raise TemplateError(message)


class ChatTemplate:
    """A chat template as Hugging Face defines it (messages, add_generation_prompt, bos_token, eos_token)."""

    def __init__(self, source: str, bos_token: str, eos_token: str) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise ModelError(f"the model's chat template does not parse: {exc}") from exc
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: Sequence[Message]) -> str:
        try:
            return self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError as exc:
            # Templates reject conversations they cannot express (e.g. roles out of order).
            raise InvalidRequest("messages", f"the model's chat template rejects them: {exc}") from None
