"""The semantic cache (`semantic_cache` plugin) with the Python SDK, the way the README shows it:
the cache key in `default_headers={"x-bf-cache-key": ...}`. A repeated streamed request is
replayed from the cache byte for byte, passes the strict grammar checker, and reaches the SDK's
stream helpers as an ordinary stream; a paraphrase is a semantic hit through the mock's
deterministic (trigram) embeddings.

The stack is this module's own (`cache_stack`): providers.json's config plus the plugin, with
OpenAI-compatible embeddings from the mock.
"""

from __future__ import annotations

import subprocess

import anthropic
import pytest
from conftest import ANTHROPIC_MODEL, HEIMDALL_SSE_CHECK_BIN, MODELS, _running_stack, text_of, user

CACHE_CONFIG = {
    "plugins": [
        {
            "enabled": True,
            "name": "semantic_cache",
            "config": {
                "provider": "openai",
                "embedding_model": "trigram-256",
                "dimension": 256,
                "threshold": 0.8,
                "ttl": "5m",
            },
        }
    ]
}


@pytest.fixture(scope="module")
def cache_stack():
    with _running_stack("heimdall-pyclient-cache-", CACHE_CONFIG) as st:
        yield st


def cached_client(stack, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=stack.base_url,
        api_key="dummy-key",
        default_headers={"x-bf-cache-key": key},
        max_retries=0,
        timeout=30.0,
    )


def messages_upstream(stack) -> int:
    return len([r for r in stack.mock_requests() if r["path"].endswith(("/messages", "/chat/completions"))])


@pytest.mark.parametrize("model", MODELS, ids=["anthropic", "openai"])
def test_a_repeated_stream_is_replayed_exactly(cache_stack, model):
    cache_stack.clear_mock_requests()
    client = cached_client(cache_stack, f"py-stream-{model}")
    prompt = "Tell me a short story about a lighthouse"
    bodies, hits = [], []
    for _ in range(2):
        with client.messages.with_streaming_response.create(
            model=model, max_tokens=64, stream=True, messages=user(prompt)
        ) as response:
            hits.append(response.headers.get("x-bf-cache-hit"))
            bodies.append(b"".join(response.iter_bytes()))
    assert hits == ["false", "true"]
    assert bodies[1] == bodies[0]
    checked = subprocess.run([HEIMDALL_SSE_CHECK_BIN, "message_stop"], input=bodies[1], capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    # The SDK's stream helper reads the replay like any stream.
    with client.messages.stream(model=model, max_tokens=64, messages=user(prompt)) as stream:
        assert stream.get_final_text() == prompt
    assert messages_upstream(cache_stack) == 1


def test_a_paraphrase_is_a_semantic_hit(cache_stack):
    client = cached_client(cache_stack, "py-semantic")
    first = client.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=64, messages=user("What is the capital of France?")
    )
    raw = client.messages.with_raw_response.create(
        model=ANTHROPIC_MODEL, max_tokens=64, messages=user("What is the capital of France, please?")
    )
    assert raw.headers["x-bf-cache-hit-type"] == "semantic"
    assert text_of(raw.parse()) == text_of(first) == "What is the capital of France?"
