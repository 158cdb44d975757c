"""Chat templates are rendered in Jinja's sandbox; tool calls are parsed from answers."""

from __future__ import annotations

import pytest

from modelbay.llm.chat import DEFAULT_TEMPLATE, ChatTemplate, TemplateFailed, parse_tool_calls


def test_a_template_renders_messages_and_the_generation_prompt() -> None:
    template = ChatTemplate(
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}",
        {"bos_token": "<s>"},
    )
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    text = template.render([{"role": "user", "content": parts}])
    assert text == "<s>[user]ab[assistant]"


def test_the_default_template_is_chatml() -> None:
    text = ChatTemplate(None, {}).render([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert ChatTemplate(None, {}).source == DEFAULT_TEMPLATE


def test_a_template_cannot_reach_python_internals() -> None:
    evil = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}", {})
    with pytest.raises(TemplateFailed):
        evil.render([{"role": "user", "content": "x"}])
    mutate = ChatTemplate("{% set _ = messages.append(1) %}ok", {})
    with pytest.raises(TemplateFailed):
        mutate.render([{"role": "user", "content": "x"}])


def test_raise_exception_in_a_template_is_a_refusal() -> None:
    strict = ChatTemplate("{{ raise_exception('roles must alternate') }}", {})
    with pytest.raises(TemplateFailed, match="roles must alternate"):
        strict.render([{"role": "user", "content": "x"}])


def test_tool_calls_are_parsed_from_tagged_blocks_and_bare_json() -> None:
    text = 'Sure.<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    content, calls = parse_tool_calls(text, {"f"})
    assert content == "Sure."
    assert [(c.name, c.arguments) for c in calls] == [("f", '{"x": 1}')]
    content, calls = parse_tool_calls('{"name": "g", "parameters": {"y": 2}}', {"g"})
    assert content == ""
    assert calls[0].name == "g"
    assert calls[0].arguments == '{"y": 2}'
    unknown = '{"name": "h", "arguments": {}}'
    assert parse_tool_calls(unknown, {"f"}) == (unknown, [])
