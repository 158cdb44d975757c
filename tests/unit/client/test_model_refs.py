"""Model references as the CLI takes them: NAME, NAME:VERSION, NAME@ALIAS."""

from __future__ import annotations

import pytest

from modelbay.client import ModelRef


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digits", ModelRef("digits")),
        ("digits:3", ModelRef("digits", 3)),
        ("digits@production", ModelRef("digits", "production")),
        ("digits:latest", ModelRef("digits", "latest")),
        ("  my.model_v-2:12 ", ModelRef("my.model_v-2", 12)),
    ],
)
def test_reference_splits_name_from_version_or_alias(text: str, expected: ModelRef) -> None:
    assert ModelRef.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "no model name"),
        (":3", "no model name"),
        ("@prod", "no model name"),
        ("digits:", "ends with ':'"),
        ("digits@", "ends with '@'"),
        ("digits:prod", "not a number"),
        ("digits:0", "not a number"),
        ("digits:-1", "not a number"),
        ("digits:1@prod", "more than one"),
        ("digits@a@b", "more than one"),
    ],
)
def test_malformed_reference_is_refused_with_a_reason(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        ModelRef.parse(text)


def test_only_named_non_latest_references_are_aliases() -> None:
    assert ModelRef.parse("m@prod").is_alias
    assert not ModelRef.parse("m:latest").is_alias
    assert not ModelRef.parse("m:2").is_alias
    assert not ModelRef.parse("m").is_alias


@pytest.mark.parametrize("text", ["m", "m:2", "m@prod", "m:latest"])
def test_reference_prints_as_it_is_typed(text: str) -> None:
    assert str(ModelRef.parse(text)) == text
