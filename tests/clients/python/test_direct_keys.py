"""Direct keys: with `client.allow_direct_keys`, a client's own provider key (not a virtual
`sk-bf-` key) in `x-api-key` or `Authorization: Bearer` is used upstream for that request in place
of the configured keys; when both headers carry one, the header native to the target provider
wins. Written the way users are told to do it: a dummy `api_key` for the SDK, the real key in
`extra_headers`.

The 2.x SDK sends its `api_key` as `Authorization: Bearer`, 0.75 as `X-Api-Key`, so one of the
two calls carries both headers on each SDK, and only the native one's key may reach the upstream.
On 0.75 the Claude call even carries `x-api-key` twice: the SDK's own `X-Api-Key: dummy-key`,
then the one `extra_headers` adds, under a name that differs only in case.
"""

from __future__ import annotations

import json

import anthropic
from conftest import ANTHROPIC_MODEL, MOCK_ANTHROPIC_KEY, MOCK_OPENAI_KEY, OPENAI_MODEL, text_of

SDK_MAJOR = int(anthropic.__version__.split(".")[0])

# What a user puts in place of "<your anthropic key>" / "<your openai key>".
DIRECT_ANTHROPIC_KEY = "sk-ant-direct-user-key-0001"
DIRECT_OPENAI_KEY = "sk-proj-direct-user-key-0002"
DUMMY_KEY = "dummy-key"


def gateway_client(stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.base_url, api_key=DUMMY_KEY, max_retries=0, timeout=30.0)


def hello_from_claude(client):
    """The documented call; `with_raw_response` only to read the answer's headers as well."""
    return client.messages.with_raw_response.create(
        model="claude-sonnet-4-5-20250929",
        max_tokens=1000,
        messages=[{"role": "user", "content": "Hello from Claude!"}],
        extra_headers={"x-api-key": DIRECT_ANTHROPIC_KEY},
    )


def hello_from_openai(client):
    """The documented call; `with_raw_response` only to read the answer's headers as well."""
    return client.messages.with_raw_response.create(
        model="openai/gpt-4o-mini",
        max_tokens=1000,
        messages=[{"role": "user", "content": "Hello from OpenAI!"}],
        extra_headers={"Authorization": f"Bearer {DIRECT_OPENAI_KEY}"},
    )


def only_upstream_call(stack, path: str) -> dict:
    calls = [c for c in stack.mock_requests() if c["path"].split("?")[0] == path]
    assert len(calls) == 1, [c["path"] for c in stack.mock_requests()]
    return calls[0]


def assert_direct_key_answer(raw, provider: str, model: str) -> None:
    headers = raw.headers
    assert headers.get("x-bf-provider") == provider, dict(headers)
    assert headers.get("x-bf-model", "").endswith(model.split("/")[-1]), dict(headers)
    assert headers.get("x-bf-key-name") == "direct", dict(headers)
    assert headers.get("x-bf-attempts") == "1", dict(headers)


def test_direct_anthropic_key_in_x_api_key(direct_keys_stack):
    with gateway_client(direct_keys_stack) as client:
        raw = hello_from_claude(client)
    sent = raw.http_request.headers
    if SDK_MAJOR >= 2:
        assert sent.get_list("authorization") == [f"Bearer {DUMMY_KEY}"]
        assert sent.get_list("x-api-key") == [DIRECT_ANTHROPIC_KEY]
    else:
        assert "authorization" not in sent
        assert sent.get_list("x-api-key") == [DUMMY_KEY, DIRECT_ANTHROPIC_KEY]
    assert text_of(raw.parse()) == "Hello from Claude!"

    call = only_upstream_call(direct_keys_stack, "/v1/messages")
    upstream = json.dumps(call["headers"])
    assert call["headers"].get("x-api-key") == DIRECT_ANTHROPIC_KEY, call["headers"]
    assert MOCK_ANTHROPIC_KEY not in upstream, call["headers"]
    assert DUMMY_KEY not in upstream, call["headers"]
    assert_direct_key_answer(raw, "anthropic", ANTHROPIC_MODEL)


def test_direct_openai_key_in_authorization(direct_keys_stack):
    with gateway_client(direct_keys_stack) as client:
        raw = hello_from_openai(client)
    sent = raw.http_request.headers
    assert sent.get_list("authorization") == [f"Bearer {DIRECT_OPENAI_KEY}"]
    if SDK_MAJOR >= 2:
        assert "x-api-key" not in sent
    else:
        assert sent.get_list("x-api-key") == [DUMMY_KEY]
    assert text_of(raw.parse()) == "Hello from OpenAI!"

    call = only_upstream_call(direct_keys_stack, "/v1/chat/completions")
    upstream = json.dumps(call["headers"])
    assert call["headers"].get("authorization") == f"Bearer {DIRECT_OPENAI_KEY}", call["headers"]
    assert MOCK_OPENAI_KEY not in upstream, call["headers"]
    assert DUMMY_KEY not in upstream, call["headers"]
    assert_direct_key_answer(raw, "openai", OPENAI_MODEL)


def test_client_keys_stay_in_the_gateway_without_allow_direct_keys(stack):
    """The same calls to a gateway without the setting: the configured keys serve them, and
    neither of the client's keys goes upstream."""
    with gateway_client(stack) as client:
        for hello, path, pool_key, direct_key in [
            (hello_from_claude, "/v1/messages", MOCK_ANTHROPIC_KEY, DIRECT_ANTHROPIC_KEY),
            (hello_from_openai, "/v1/chat/completions", MOCK_OPENAI_KEY, DIRECT_OPENAI_KEY),
        ]:
            stack.clear_mock_requests()
            assert text_of(hello(client).parse()).startswith("Hello from ")
            call = only_upstream_call(stack, path)
            upstream = json.dumps(call["headers"])
            assert pool_key in upstream, call["headers"]
            assert direct_key not in upstream, call["headers"]
            assert DUMMY_KEY not in upstream, call["headers"]
