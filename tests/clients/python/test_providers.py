"""One test per feature per provider (fixture `provider`, from providers.json), through the mock.

Each test that passes is recorded for the README's provider matrix (see conftest.py). Where a
dialect has no such feature, the test asserts the documented behaviour instead and says so in
`shown.outcome`.
"""

from __future__ import annotations

import subprocess

import anthropic
import pytest
from conftest import (
    CACHED_PROMPT,
    ERROR_CASES,
    HEIMDALL_SSE_CHECK_BIN,
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

PARALLEL_TOOLS_PROMPT = (
    'Two things. [[mock:tool get_weather {"city":"Paris","days":3}]] [[mock:tool get_time {"tz":"Europe/Paris"}]]'
)


@pytest.mark.feature("text")
def test_text(client, provider, stack):
    msg = client.messages.create(model=provider["model"], max_tokens=64, messages=user("hello from every provider"))
    assert msg.id.startswith("msg_"), msg.id
    assert text_of(msg) == "hello from every provider"
    assert msg.stop_reason == "end_turn"
    assert_usage(msg)
    assert stack.upstream_calls(provider["upstream"]), [c["path"] for c in stack.mock_requests()]


@pytest.mark.feature("stream")
def test_stream(client, provider, stack):
    assert_streams_text(client, provider["model"])
    assert stack.upstream_calls(provider["upstream"]), [c["path"] for c in stack.mock_requests()]


@pytest.mark.feature("stream")
@pytest.mark.parametrize(
    "prompt,ending",
    [
        ("[[mock:reasoning let me think]] hi there " + PARALLEL_TOOLS_PROMPT, "message_stop"),
        ("[[mock:stream_error]] hi there", "error"),
    ],
    ids=["thinking-text-tools", "error"],
)
def test_raw_stream_grammar(client, provider, prompt, ending):
    """The bytes the SDK received pass the strict grammar checker the Rust tests use."""
    with client.messages.with_streaming_response.create(
        model=provider["model"], max_tokens=64, stream=True, tools=[WEATHER_TOOL, TIME_TOOL], messages=user(prompt)
    ) as response:
        raw = b"".join(response.iter_bytes())
    checked = subprocess.run([HEIMDALL_SSE_CHECK_BIN, ending], input=raw, capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode() + raw.decode(errors="replace")


@pytest.mark.feature("tools")
def test_streamed_tool_calls(client, provider):
    with client.messages.stream(
        model=provider["model"], max_tokens=256, tools=[WEATHER_TOOL, TIME_TOOL], messages=user(PARALLEL_TOOLS_PROMPT)
    ) as stream:
        input_deltas = [e for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    calls = tool_uses(final)
    assert [(c.name, c.input) for c in calls] == [
        ("get_weather", {"city": "Paris", "days": 3}),
        ("get_time", {"tz": "Europe/Paris"}),
    ]
    assert len({c.id for c in calls}) == 2, "tool_use ids must be distinct"
    assert len(input_deltas) >= 2, "each tool input arrives as input_json deltas"
    assert final.stop_reason == "tool_use"
    assert_usage(final)


@pytest.mark.feature("tool_result")
def test_tool_result_round_trip(client, provider):
    model = provider["model"]
    prompt = '[[mock:tool get_weather {"city":"Paris"}]] [[mock:tool get_time {"tz":"UTC"}]]'
    first = client.messages.create(model=model, max_tokens=256, tools=[WEATHER_TOOL, TIME_TOOL], messages=user(prompt))
    assert first.stop_reason == "tool_use", first
    calls = tool_uses(first)
    assert len(calls) == 2, first.content
    messages = user(prompt) + [
        assistant_turn(first),
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny, 21C"},
                {"type": "tool_result", "tool_use_id": calls[1].id, "content": "noon", "is_error": True},
            ],
        },
    ]
    with client.messages.stream(model=model, max_tokens=256, tools=[WEATHER_TOOL, TIME_TOOL], messages=messages) as s:
        final = s.get_final_message()
    assert text_of(final) == "tool said: sunny, 21C | [tool error] noon"
    assert final.stop_reason == "end_turn"


@pytest.mark.feature("images")
def test_image_base64(client, provider):
    text = image_answer(client, provider["model"])
    # Ollama's `images` are bare base64: the media type cannot reach it.
    if provider["image_media_type"]:
        assert "image/png" in text, text


@pytest.mark.feature("thinking")
def test_thinking_round_trip(client, provider, shown):
    """Thinking streams as a thinking block before the answer, and goes back in history (with
    its signature, where the dialect signs reasoning) next to the tool result."""
    model = provider["model"]
    prompt = '[[mock:reasoning I should look it up]] [[mock:tool get_weather {"city":"Paris"}]]'
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with client.messages.stream(
        model=model, max_tokens=2048, thinking=thinking, tools=[WEATHER_TOOL], messages=user(prompt)
    ) as stream:
        first = stream.get_final_message()
    assert first.content[0].type == "thinking", first.content
    assert first.content[0].thinking == "I should look it up"
    if provider["thinking_signature"]:
        assert first.content[0].signature, "signed reasoning must keep its signature"
    else:
        # Unsigned reasoning (OpenAI-style, Ollama) has nothing to sign: the field is empty.
        assert first.content[0].signature == "", first.content[0]
        shown.outcome = "unsigned"
    calls = tool_uses(first)
    assert [c.input for c in calls] == [{"city": "Paris"}]
    messages = user(prompt) + [
        assistant_turn(first),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "cloudy"}]},
    ]
    final = client.messages.create(
        model=model, max_tokens=2048, thinking=thinking, tools=[WEATHER_TOOL], messages=messages
    )
    assert text_of(final) == "tool said: cloudy"


@pytest.mark.feature("cache_usage")
def test_cache_read_usage(client, provider, shown):
    with client.messages.stream(model=provider["model"], max_tokens=64, messages=user(CACHED_PROMPT)) as stream:
        final = stream.get_final_message()
    assert_usage(final)
    if provider["cache"]:
        assert final.usage.cache_read_input_tokens == 7, final.usage
    else:
        # The dialect reports no cache usage: the field stays absent (or zero), never invented.
        assert not final.usage.cache_read_input_tokens, final.usage
        shown.outcome = "none"


@pytest.mark.feature("errors")
def test_upstream_errors_are_typed(client, provider):
    for status, client_status, exc_name, error_type in ERROR_CASES:
        assert_upstream_error(client, provider["model"], status, client_status, exc_name, error_type)
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(
            model=provider["model"], max_tokens=32, messages=user("[[mock:error 429 retry_after=3]]")
        ) as stream:
            stream.get_final_message()
    assert isinstance(info.value, sdk_exception("RateLimitError")), type(info.value)
    with pytest.raises(anthropic.APIError) as info:
        with client.messages.stream(
            model=provider["model"], max_tokens=64, messages=user("[[mock:stream_error]] partial answer here")
        ) as stream:
            stream.get_final_message()
    body = getattr(info.value, "body", None)
    assert isinstance(body, dict) and body.get("type") == "error", body


@pytest.mark.feature("count_tokens")
def test_count_tokens(client, provider, stack, shown):
    counted_tokens(client, provider["model"])
    paths = [c["path"] for c in stack.mock_requests()]
    if provider["count_tokens"] == "upstream":
        assert any("count" in p for p in paths), paths
    else:
        assert paths == [], f"a locally estimated count must not reach the upstream: {paths}"
        shown.outcome = "estimate"


@pytest.mark.feature("models")
def test_models_list_and_retrieve(client, provider, shown):
    ids = [m.id for m in client.models.list()]
    assert provider["model"] in ids, ids
    info = client.models.retrieve(provider["model"])
    assert info.id == provider["model"]
    assert info.type == "model"
    if provider["models"] == "config":
        shown.outcome = "configured"
