"""The official Python `anthropic` SDK against Heimdall.

Runs unchanged against anthropic 2.x (anthropic-version 2026-10-21, Authorization: Bearer)
and 0.75.0 (anthropic-version 2023-06-01, X-Api-Key). Every behavioural test runs for an
Anthropic pass-through model and a translated OpenAI model (fixture `model`).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import anthropic
import pytest
from conftest import (
    ANTHROPIC_MODEL,
    CACHED_PROMPT,
    CLIENT_KEY,
    ERROR_CASES,
    HEIMDALL_SSE_CHECK_BIN,
    MOCK_ANTHROPIC_KEY,
    MOCK_OPENAI_KEY,
    MODELS,
    OPENAI_MODEL,
    TIME_TOOL,
    WEATHER_TOOL,
    assert_streams_text,
    assert_upstream_error,
    assert_usage,
    assistant_turn,
    counted_tokens,
    image_answer,
    sdk_exception,
    text_of,
    tool_uses,
    user,
)

SDK_MAJOR = int(anthropic.__version__.split(".")[0])

# --------------------------------------------------------------------------- SDK identity


def test_sdk_version_and_wire_style(stack):
    expected = os.environ.get("HEIMDALL_EXPECT_ANTHROPIC_PY")
    if expected:
        assert anthropic.__version__ == expected
    c = anthropic.Anthropic(base_url=stack.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30.0)
    raw = c.messages.with_raw_response.create(model=ANTHROPIC_MODEL, max_tokens=32, messages=user("style check"))
    sent = raw.http_request.headers
    assert raw.http_request.url.path == "/anthropic/v1/messages"
    if SDK_MAJOR >= 2:
        assert sent["anthropic-version"] == "2026-10-21"
        assert sent["authorization"] == f"Bearer {CLIENT_KEY}"
        assert "x-api-key" not in sent
    else:
        assert sent["anthropic-version"] == "2023-06-01"
        assert sent["x-api-key"] == CLIENT_KEY
        assert "authorization" not in sent
    assert text_of(raw.parse()) == "style check"


# --------------------------------------------------------------------------- plain text


def test_text_non_streaming(client, model, stack):
    msg = client.messages.create(model=model, max_tokens=64, messages=user("hello heimdall"))
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.id.startswith("msg_"), msg.id
    assert text_of(msg) == "hello heimdall"
    assert msg.stop_reason == "end_turn"
    assert msg.model.endswith(model.split("/")[-1]), msg.model
    assert_usage(msg)
    assert msg._request_id, "request-id header missing"


def test_system_prompt_and_multi_turn(client, model):
    msg = client.messages.create(
        model=model,
        max_tokens=64,
        system=[{"type": "text", "text": "You are terse."}],
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "noted"},
            {"role": "user", "content": [{"type": "text", "text": "second turn"}]},
        ],
    )
    assert text_of(msg) == "second turn"


def test_client_key_not_forwarded_upstream(client, model, stack):
    client.messages.create(model=model, max_tokens=32, messages=user("key check"))
    calls = stack.mock_requests()
    assert calls, "gateway made no upstream request"
    call = calls[-1]
    headers = call["headers"]
    assert CLIENT_KEY not in json.dumps(call["headers"]), headers
    if model == ANTHROPIC_MODEL:
        assert call["path"].split("?")[0] == "/v1/messages"
        assert headers.get("x-api-key") == MOCK_ANTHROPIC_KEY or headers.get("authorization") == f"Bearer {MOCK_ANTHROPIC_KEY}"
    else:
        assert call["path"].split("?")[0] == "/v1/chat/completions"
        assert headers.get("authorization") == f"Bearer {MOCK_OPENAI_KEY}"
        assert call["body"]["model"] == "gpt-4o-mini"


# --------------------------------------------------------------------------- streaming


def test_stream_helper_text(client, model):
    assert_streams_text(client, model)


def test_long_stream_reassembles(client, model):
    with client.messages.stream(model=model, max_tokens=4096, messages=user("[[mock:words 600]]")) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 10, len(pieces)
    assert "".join(pieces) == text_of(final)
    assert len(text_of(final).split()) == 600
    assert final.stop_reason == "end_turn"
    assert_usage(final)


@pytest.mark.parametrize(
    "prompt,ending",
    [
        ("grammar check", "message_stop"),
        ('Weather? [[mock:tool get_weather {"city":"Paris"}]] [[mock:tool get_time]]', "message_stop"),
        ("[[mock:reasoning let me think]] hi there", "message_stop"),
        ("[[mock:stream_error]] hi there", "error"),
    ],
)
def test_raw_stream_passes_the_strict_grammar_checker(client, model, prompt, ending):
    """The bytes on the wire, as the SDK received them, pass the same checker as the Rust tests."""
    with client.messages.with_streaming_response.create(
        model=model, max_tokens=64, stream=True, messages=user(prompt)
    ) as response:
        raw = b"".join(response.iter_bytes())
    checked = subprocess.run(
        [HEIMDALL_SSE_CHECK_BIN, ending], input=raw, capture_output=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_stream_raw_event_grammar(client, model):
    events = list(client.messages.create(model=model, max_tokens=64, stream=True, messages=user("grammar check")))
    types = [e.type for e in events]
    assert types[0] == "message_start", types
    assert types[-1] == "message_stop", types
    assert "message_delta" in types
    started = [e.index for e in events if e.type == "content_block_start"]
    assert started == list(range(len(started))), started
    open_blocks: set[int] = set()
    for e in events:
        if e.type == "content_block_start":
            open_blocks.add(e.index)
        elif e.type == "content_block_delta":
            assert e.index in open_blocks, f"delta for unopened block {e.index}"
        elif e.type == "content_block_stop":
            open_blocks.remove(e.index)
    assert not open_blocks
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens > 0


@pytest.mark.parametrize("finish,stop_reason", [("length", "max_tokens"), ("content_filter", "refusal")])
def test_stream_stop_reasons(client, model, finish, stop_reason):
    with client.messages.stream(
        model=model, max_tokens=64, messages=user(f"[[mock:finish {finish}]] cut short")
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == stop_reason
    assert_usage(final)


def test_non_streaming_max_tokens_stop(client, model):
    msg = client.messages.create(model=model, max_tokens=64, messages=user("[[mock:finish length]] too long"))
    assert msg.stop_reason == "max_tokens"


def test_stream_survives_upstream_stall(client, model):
    with client.messages.stream(
        model=model, max_tokens=64, messages=user("[[mock:stall 1500]] slow but complete")
    ) as stream:
        final = stream.get_final_message()
    assert text_of(final) == "slow but complete"


def test_cache_read_usage(client, model):
    with client.messages.stream(model=model, max_tokens=64, messages=user(CACHED_PROMPT)) as stream:
        final = stream.get_final_message()
    assert final.usage.cache_read_input_tokens == 7, final.usage


def test_reasoning_becomes_thinking_block(client, model):
    with client.messages.stream(
        model=model, max_tokens=2048, messages=user("[[mock:reasoning pondering deeply]] answer")
    ) as stream:
        final = stream.get_final_message()
    thinking = [b for b in final.content if b.type == "thinking"]
    assert thinking and thinking[0].thinking == "pondering deeply", final.content
    assert final.content[0].type == "thinking", "thinking must come before the answer"
    assert text_of(final) == "answer"


def test_async_client_stream(stack, model):
    import asyncio

    async def run():
        async with anthropic.AsyncAnthropic(
            base_url=stack.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30.0
        ) as c:
            async with c.messages.stream(model=model, max_tokens=64, messages=user("async hello there")) as stream:
                text = "".join([t async for t in stream.text_stream])
                final = await stream.get_final_message()
            return text, final

    text, final = asyncio.run(run())
    assert text == "async hello there"
    assert final.stop_reason == "end_turn"
    assert_usage(final)


def test_beta_messages_route(client, model):
    """`client.beta.messages` calls /v1/messages?beta=true with an anthropic-beta header."""
    msg = client.beta.messages.create(
        model=model,
        max_tokens=64,
        betas=["interleaved-thinking-2025-05-14"],
        messages=user("beta hello"),
    )
    assert text_of(msg) == "beta hello"
    assert msg.stop_reason == "end_turn"


# --------------------------------------------------------------------------- tools


def test_stream_single_tool_call(client, model):
    with client.messages.stream(
        model=model,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=user('Weather? [[mock:tool get_weather {"city":"Paris","days":3}]]'),
    ) as stream:
        final = stream.get_final_message()
    calls = tool_uses(final)
    assert len(calls) == 1, final.content
    assert calls[0].name == "get_weather"
    assert calls[0].input == {"city": "Paris", "days": 3}
    assert calls[0].id
    assert final.stop_reason == "tool_use"
    assert_usage(final)


def test_stream_tool_call_whole_fragment(client, model):
    with client.messages.stream(
        model=model,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=user('[[mock:tool_whole get_weather {"city":"Oslo","days":1}]]'),
    ) as stream:
        final = stream.get_final_message()
    calls = tool_uses(final)
    assert [c.input for c in calls] == [{"city": "Oslo", "days": 1}]
    assert final.stop_reason == "tool_use"


def test_stream_parallel_tool_calls(client, model):
    prompt = (
        'Two things. [[mock:tool get_weather {"city":"Paris","days":3}]] '
        '[[mock:tool get_time {"tz":"Europe/Paris"}]]'
    )
    with client.messages.stream(
        model=model, max_tokens=256, tools=[WEATHER_TOOL, TIME_TOOL], messages=user(prompt)
    ) as stream:
        final = stream.get_final_message()
    calls = tool_uses(final)
    assert [(c.name, c.input) for c in calls] == [
        ("get_weather", {"city": "Paris", "days": 3}),
        ("get_time", {"tz": "Europe/Paris"}),
    ]
    assert len({c.id for c in calls}) == 2, "tool_use ids must be distinct"
    assert final.stop_reason == "tool_use"


def test_non_streaming_tool_call(client, model):
    msg = client.messages.create(
        model=model,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto"},
        messages=user('[[mock:tool get_weather {"city":"Rome","days":2}]]'),
    )
    calls = tool_uses(msg)
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Rome", "days": 2})]
    assert msg.stop_reason == "tool_use"


def _first_turn(client, model, prompt, tools):
    first_messages = user(prompt)
    first = client.messages.create(model=model, max_tokens=256, tools=tools, messages=first_messages)
    assert first.stop_reason == "tool_use", first
    return first_messages + [assistant_turn(first)], tool_uses(first)


@pytest.mark.parametrize("streaming", [False, True], ids=["create", "stream"])
def test_tool_result_round_trip(client, model, streaming):
    history, calls = _first_turn(client, model, '[[mock:tool get_weather {"city":"Paris","days":3}]]', [WEATHER_TOOL])
    messages = history + [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny, 21C"}]}
    ]
    if streaming:
        with client.messages.stream(model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=messages) as stream:
            final = stream.get_final_message()
    else:
        final = client.messages.create(model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=messages)
    assert text_of(final) == "tool said: sunny, 21C"
    assert final.stop_reason == "end_turn"


def test_thinking_and_tool_use_round_trip(client, model):
    """Interleaved-thinking style: the thinking block (with its signature) goes back in history."""
    prompt = '[[mock:reasoning I should look it up]] [[mock:tool get_weather {"city":"Paris"}]]'
    with client.messages.stream(model=model, max_tokens=4096, tools=[WEATHER_TOOL], messages=user(prompt)) as stream:
        first = stream.get_final_message()
    assert [b.type for b in first.content][0] == "thinking", first.content
    assert first.content[0].thinking == "I should look it up"
    calls = tool_uses(first)
    assert [c.input for c in calls] == [{"city": "Paris"}]
    messages = user(prompt) + [
        assistant_turn(first),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "cloudy"}]},
    ]
    final = client.messages.create(model=model, max_tokens=4096, tools=[WEATHER_TOOL], messages=messages)
    assert text_of(final) == "tool said: cloudy"


def test_parallel_tool_results_round_trip(client, model):
    history, calls = _first_turn(
        client,
        model,
        '[[mock:tool get_weather {"city":"Paris"}]] [[mock:tool get_time {"tz":"UTC"}]]',
        [WEATHER_TOOL, TIME_TOOL],
    )
    assert len(calls) == 2
    messages = history + [
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": calls[0].id, "content": "rainy"},
                {"type": "tool_result", "tool_use_id": calls[1].id, "content": [{"type": "text", "text": "12:00"}]},
            ],
        }
    ]
    final = client.messages.create(model=model, max_tokens=256, tools=[WEATHER_TOOL, TIME_TOOL], messages=messages)
    assert text_of(final) == "tool said: rainy | 12:00"


def test_tool_result_is_error(client, model):
    history, calls = _first_turn(client, model, '[[mock:tool get_weather {"city":"Atlantis"}]]', [WEATHER_TOOL])
    messages = history + [
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": calls[0].id, "content": "city not found", "is_error": True}
            ],
        }
    ]
    with client.messages.stream(model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=messages) as stream:
        final = stream.get_final_message()
    assert text_of(final) == "tool said: [tool error] city not found"


# --------------------------------------------------------------------------- images


def test_image_base64(client, model):
    text = image_answer(client, model)
    assert "image/png" in text, text


def test_image_url(client, model):
    url = "https://example.com/heimdall-cat.png"
    with client.messages.stream(
        model=model,
        max_tokens=64,
        messages=user([{"type": "text", "text": "describe"}, {"type": "image", "source": {"type": "url", "url": url}}]),
    ) as stream:
        final = stream.get_final_message()
    assert text_of(final) == f"describe [image: {url}]"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status,client_status,exc_name,error_type", ERROR_CASES, ids=[str(c[0]) for c in ERROR_CASES])
def test_upstream_error_non_streaming(client, model, status, client_status, exc_name, error_type):
    assert_upstream_error(client, model, status, client_status, exc_name, error_type)


def test_upstream_503_keeps_status_with_overloaded_type(client, model):
    """Upstream statuses are kept. A translated 503 carries Anthropic's overloaded_error type;
    an Anthropic upstream's error body reaches the client as the upstream wrote it."""
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=model, max_tokens=32, messages=user("[[mock:error 503]]"))
    err = info.value
    assert err.status_code == 503, err
    assert isinstance(err, anthropic.InternalServerError), type(err)
    if "/" in model:
        assert err.body["error"]["type"] == "overloaded_error"
    else:
        assert err.body == {"type": "error", "error": {"type": "api_error", "message": "mock error 503"}}
    assert err.response.headers["request-id"].startswith("req_")


@pytest.mark.parametrize("status,exc_name", [(429, "RateLimitError"), (529, "OverloadedError")])
def test_upstream_error_on_stream_open(client, model, status, exc_name):
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(
            model=model, max_tokens=32, messages=user(f"[[mock:error {status} retry_after=3]]")
        ) as stream:
            stream.get_final_message()
    assert isinstance(info.value, sdk_exception(exc_name)), type(info.value)
    assert info.value.request_id


def test_transient_overload_is_retried(stack, model):
    """A single upstream 529 is absorbed (by the gateway's retry or the SDK's own retries)."""
    import uuid

    c = anthropic.Anthropic(base_url=stack.base_url, api_key=CLIENT_KEY, max_retries=2, timeout=30.0)
    key = f"retry-{uuid.uuid4().hex[:8]}"
    msg = c.messages.create(model=model, max_tokens=32, messages=user(f"[[mock:fail_first 1 529 {key}]] recovered"))
    assert text_of(msg) == "recovered"
    assert len(stack.mock_requests()) >= 2


def test_stream_error_event_raises(client, model):
    start = time.monotonic()
    with pytest.raises(anthropic.APIError) as info:
        with client.messages.stream(
            model=model, max_tokens=64, messages=user("[[mock:stream_error]] partial answer here")
        ) as stream:
            for _ in stream.text_stream:
                pass
            stream.get_final_message()
    assert time.monotonic() - start < 20
    body = getattr(info.value, "body", None)
    assert isinstance(body, dict) and body.get("type") == "error", body


@pytest.mark.timeout(40)
def test_stream_cut_midway_is_an_error_not_a_hang(stack, model):
    c = anthropic.Anthropic(base_url=stack.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=15.0)
    start = time.monotonic()
    with pytest.raises(Exception) as info:
        with c.messages.stream(
            model=model, max_tokens=64, messages=user("[[mock:cut]] this reply will be cut in the middle")
        ) as stream:
            for _ in stream.text_stream:
                pass
            final = stream.get_final_message()
            # A cleanly closed stream without message_stop would land here silently.
            pytest.fail(f"stream cut was not surfaced; final message: {final!r}")
    elapsed = time.monotonic() - start
    assert not isinstance(info.value, pytest.fail.Exception), info.value
    assert "timeout" not in type(info.value).__name__.lower(), f"hung until timeout: {info.value!r}"
    assert elapsed < 12, f"took {elapsed:.1f}s"


# --------------------------------------------------------------------------- misc endpoints


def test_count_tokens(client, model):
    counted_tokens(client, model)


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert OPENAI_MODEL in ids, ids
    assert len(ids) == len(set(ids)), "duplicate model ids"


def test_models_list_small_pages(client):
    page = client.models.list(limit=1)
    assert len(page.data) == 1
    ids = [m.id for m in page]  # auto-pagination via has_more / after_id
    assert OPENAI_MODEL in ids, ids
    assert len(ids) == len(set(ids)), ids


def test_models_list_has_bare_claude_ids(client):
    """Anthropic-native clients (and Claude Code's model picker) know Claude models by their
    bare ids, which are also what requests use for pass-through."""
    ids = [m.id for m in client.models.list()]
    assert ANTHROPIC_MODEL in ids, ids


@pytest.mark.parametrize("model_id", MODELS, ids=["anthropic", "openai"])
def test_models_retrieve(client, model_id):
    info = client.models.retrieve(model_id)
    assert info.id == model_id
    assert info.type == "model"
    assert info.display_name


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="nonexistent-provider/foo", max_tokens=16, messages=user("hi"))
    assert info.value.status_code in (400, 404), info.value
    assert info.value.body["error"]["type"] in ("not_found_error", "invalid_request_error")
