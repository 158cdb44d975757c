"""Chat templates: the model's own Jinja template, rendered in a sandbox.

A chat template comes with the model (GGUF metadata, ``tokenizer_config.json`` or
``chat_template.jinja``), so it is untrusted code: it is rendered by Jinja's immutable
sandbox, which refuses attribute access to internals and mutation of the values passed in.
Tool calls in the output are parsed for templates that define tools.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

DEFAULT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, for a model that ships no template of its own."""


class TemplateFailed(ValueError):
    """The template refused the conversation (``raise_exception``) or could not render it."""


def _raise(message: str) -> None:
    raise TemplateFailed(message)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


class ChatTemplate:
    """Renders conversations (OpenAI messages) into the prompt text the model was tuned on."""

    def __init__(self, source: str | None, special_tokens: dict[str, str]):
        self.source = source or DEFAULT_TEMPLATE
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(self.source)
        except TemplateError as exc:
            raise TemplateFailed(f"the model's chat template does not compile: {exc}") from None
        self._special = special_tokens
        self.supports_tools = "tools" in self.source

    def render(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        try:
            return self._template.render(
                messages=[_plain(m) for m in messages],
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                **self._special,
            )
        except TemplateFailed:
            raise
        except Exception as exc:  # a template is code: anything may go wrong in it
            raise TemplateFailed(f"the chat template failed on these messages: {exc}") from None


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """A message whose content parts (``[{"type": "text", "text": ...}]``) are joined."""
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return {**message, "content": text}
    if content is None:
        return {**message, "content": ""}
    return message


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """JSON text, as OpenAI sends it."""


_TAGGED = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


def parse_tool_calls(text: str, tool_names: set[str]) -> tuple[str, list[ToolCall]]:
    """Tool calls in a model's answer: ``<tool_call>{json}</tool_call>`` blocks (Hermes,
    Qwen) or an answer that is one JSON object ``{"name", "arguments"|"parameters"}``
    (Llama 3). Returns the remaining content and the calls of known tools."""
    calls: list[ToolCall] = []
    for match in _TAGGED.finditer(text):
        call = _call(match.group(1), tool_names)
        if call is not None:
            calls.append(call)
    if calls:
        return _TAGGED.sub("", text).strip(), calls
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        call = _call(stripped, tool_names)
        if call is not None:
            return "", [call]
    return text, []


def _call(blob: str, tool_names: set[str]) -> ToolCall | None:
    try:
        data = json.loads(blob)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("name") not in tool_names:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(f"call_{uuid.uuid4().hex[:24]}", str(data["name"]), arguments)
