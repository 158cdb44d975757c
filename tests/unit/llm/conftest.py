"""The real SmolLM2 tokenizer, shared by the tests that need one (the model: ``smollm2``
in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbay.llm.tokenizer import Tokenizer, load_tokenizer


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2: Path) -> Tokenizer:
    return load_tokenizer(smollm2)
