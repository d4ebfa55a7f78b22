"""Rendering a conversation into a prompt: a Jinja chat template (sandboxed) or one of llama.cpp's built-in ones.

Which one an engine uses (`choose_template`): engine.chat_template_file (a Jinja file), else engine.chat_template,
else the model manifest's chat_template; 'gguf' means the template embedded in the GGUF, any other name one of
llama.cpp's built-in templates (chatml, gemma, llama3, phi3, ...), so a GGUF without a template can be served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edged.config.engine import EngineSettings
from edged.domain import Message
from edged.engine.native import NativeModel, apply_builtin_template, builtin_templates
from edged.errors import InvalidRequest, ModelError

EMBEDDED = "gguf"


def _raise(message: str) -> None:
    raise TemplateError(message)


class PromptTemplate(Protocol):
    """Renders a conversation (with the assistant's turn opened) into prompt text."""

    bos_token: str

    def render(self, messages: Sequence[Message]) -> str: ...


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


class BuiltinChatTemplate:
    """One of llama.cpp's built-in chat templates, by name (llama_chat_apply_template; no Jinja involved)."""

    def __init__(self, name: str, bos_token: str) -> None:
        choices = builtin_templates()
        if name not in choices:
            raise ModelError(
                f"chat template {name!r} is not one of llama.cpp's built-in templates: {', '.join(choices)}"
            )
        self.name = name
        self.bos_token = bos_token

    def render(self, messages: Sequence[Message]) -> str:
        return apply_builtin_template(self.name, [(m.role, m.content) for m in messages])


def choose_template(model: NativeModel, settings: EngineSettings, manifest_template: str) -> PromptTemplate:
    """The engine's template: a Jinja file, a built-in name, or the GGUF's own (see the module docstring)."""
    bos, eos = model.token_text(model.bos), model.token_text(model.eos)
    if settings.chat_template_file is not None:
        try:
            source = settings.chat_template_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"engine.chat_template_file {settings.chat_template_file}: {exc}") from None
        return ChatTemplate(source, bos, eos)
    name = settings.chat_template or manifest_template
    if name != EMBEDDED:
        return BuiltinChatTemplate(name, bos)
    embedded = model.metadata("tokenizer.chat_template")
    if not embedded:
        raise ModelError(
            f"{model.path} has no chat template (tokenizer.chat_template): set engine.chat_template to one of "
            f"llama.cpp's built-in templates ({', '.join(builtin_templates())}), or engine.chat_template_file "
            "to a Jinja template file, or chat_template in the model's manifest"
        )
    return ChatTemplate(embedded, bos, eos)
