"""Virtual keys (governance) with the Python SDK, the way Bifrost's users are told to use them: a
dummy `api_key` for the SDK and the virtual key in `default_headers={"x-bf-vk": ...}`, or the
virtual key (`sk-bf-…`) as the SDK's own key. The 2.x SDK sends its `api_key` as `Authorization:
Bearer` (API generation 2026-10-21), 0.75 as `X-Api-Key`; `auth_token` is `Authorization: Bearer`
on both, so each SDK shows both headers.

Every refusal must surface as the SDK's typed exception, with Anthropic's error body, before
anything reaches the upstream: 401 `authentication_error` (no key, unknown key), 403
`permission_error` (inactive, expired, provider or model not allowed), 402 `billing_error`
(budget spent), 429 `rate_limit_error` with `retry-after`.

The stack is this module's own (`governance_stack`): providers.json's config with the virtual keys
below and `client.enforce_auth_on_inference` on. Each key belongs to one test; the limited ones
(rate limit, budget) start from zero once per session and reset after an hour or a month, so
nothing resets while the tests run.
"""

from __future__ import annotations

import json

import anthropic
import pytest
from conftest import ANTHROPIC_MODEL, MOCK_ANTHROPIC_KEY, MOCK_OPENAI_KEY, OPENAI_MODEL, _running_stack, text_of, user

SDK_MAJOR = int(anthropic.__version__.split(".")[0])

TEAM_KEY = "sk-bf-team-key"
MINI_ONLY_KEY = "sk-bf-mini-only"
INACTIVE_KEY = "sk-bf-switched-off"
EXPIRED_KEY = "sk-bf-expired"
LIMITED_KEY = "sk-bf-three-an-hour"
BUDGET_KEY = "sk-bf-one-dollar"
UNKNOWN_KEY = "sk-bf-nobody-knows-me"
DUMMY_KEY = "dummy-key"

GOVERNANCE_CONFIG = {
    "client": {"enforce_auth_on_inference": True},
    # Output at $1 a token, so that one answer spends the $1 budget below.
    "pricing": {"gpt-4o-mini": {"input": 0.0, "output": 1_000_000.0}},
    "governance": {
        "virtual_keys": [
            # A model without a provider prefix goes to one of the key's providers that allow it,
            # chosen by weight; so each provider names its model, and a bare Claude model can
            # only go to Anthropic.
            {
                "id": "vk-team",
                "value": TEAM_KEY,
                "provider_configs": [
                    {"provider": "openai", "allowed_models": ["gpt-4o-mini"], "key_ids": ["*"]},
                    {"provider": "anthropic", "allowed_models": [ANTHROPIC_MODEL], "key_ids": ["*"]},
                ],
            },
            {
                "id": "vk-mini-only",
                "value": MINI_ONLY_KEY,
                "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"], "key_ids": ["*"]}],
            },
            {"id": "vk-off", "value": INACTIVE_KEY, "is_active": False},
            {"id": "vk-expired", "value": EXPIRED_KEY, "expires_at": "2020-01-01T00:00:00Z"},
            {
                "id": "vk-limited",
                "value": LIMITED_KEY,
                "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1h"},
            },
            {"id": "vk-budget", "value": BUDGET_KEY, "budgets": [{"max_limit": 1, "reset_duration": "1M"}]},
        ]
    },
}


@pytest.fixture(scope="module")
def governance_stack():
    """A stack whose gateway has the virtual keys above and requires one on every inference."""
    with _running_stack("heimdall-pyclient-governance-", GOVERNANCE_CONFIG) as st:
        yield st


def vk_client(stack, **kwargs) -> anthropic.Anthropic:
    """A client for the refusal tests. `max_retries=0`: the SDK retries a 429 by itself (twice by
    default, after its own 0.5-8 s backoff, since it ignores a retry-after over 60 s), so the
    refusal would surface seconds late and only after two more refused requests; 401, 402 and 403
    are not retried, but these tests do not depend on that."""
    kwargs.setdefault("api_key", DUMMY_KEY)
    return anthropic.Anthropic(base_url=stack.base_url, max_retries=0, timeout=30.0, **kwargs)


def with_vk(stack, key: str) -> anthropic.Anthropic:
    return vk_client(stack, default_headers={"x-bf-vk": key})


def assert_refused(info, exc_class, status: int, error_type: str, stack) -> str:
    """The SDK raised `exc_class` with `status` and Anthropic's error body of `error_type`, and
    nothing went upstream; returns the error's message."""
    err = info.value
    assert isinstance(err, exc_class), f"{type(err).__name__}: {err}"
    assert err.status_code == status
    assert isinstance(err.body, dict), err.body
    assert err.body.get("type") == "error", err.body
    assert err.body["error"]["type"] == error_type, err.body
    message = err.body["error"]["message"]
    assert isinstance(message, str) and message, err.body
    assert err.request_id, "request-id header missing on a refusal"
    assert stack.mock_requests() == [], "a refused request reached the upstream"
    return message


def assert_upstream_kept_the_keys_in(stack, model: str) -> None:
    """One upstream call, made with the gateway's configured provider key: neither the virtual
    key nor the SDK's dummy key went upstream."""
    calls = stack.mock_requests()
    assert len(calls) == 1, [c["path"] for c in calls]
    headers = calls[0]["headers"]
    upstream = json.dumps(headers)
    assert "sk-bf-" not in upstream, headers
    assert DUMMY_KEY not in upstream, headers
    if model == OPENAI_MODEL:
        assert headers.get("authorization") == f"Bearer {MOCK_OPENAI_KEY}", headers
    else:
        assert MOCK_ANTHROPIC_KEY in upstream, headers


# --------------------------------------------------------------------------- allowed


def test_the_documented_example(governance_stack):
    client = anthropic.Anthropic(
        base_url=governance_stack.base_url,
        api_key="dummy-key",
        default_headers={"x-bf-vk": "sk-bf-team-key"},
    )

    response = client.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=1000,
        messages=[{"role": "user", "content": "Hello from the team!"}],
    )

    assert text_of(response) == "Hello from the team!"
    assert response.stop_reason == "end_turn"
    assert_upstream_kept_the_keys_in(governance_stack, OPENAI_MODEL)


@pytest.mark.parametrize("credential", ["api_key", "auth_token"])
def test_the_virtual_key_as_the_sdks_own_key(governance_stack, model, credential):
    """`api_key="sk-bf-…"` (or `auth_token=`) and no extra header: the gateway reads the virtual
    key from `X-Api-Key` or `Authorization: Bearer`, whichever the SDK sent."""
    with anthropic.Anthropic(base_url=governance_stack.base_url, **{credential: TEAM_KEY}) as client:
        raw = client.messages.with_raw_response.create(
            model=model, max_tokens=1000, messages=user("Hello with my own key!")
        )
    sent = raw.http_request.headers
    assert "x-bf-vk" not in sent
    if SDK_MAJOR >= 2:
        assert sent.get("anthropic-version") == "2026-10-21"
    else:
        assert sent.get("anthropic-version") == "2023-06-01"
    if credential == "api_key" and SDK_MAJOR < 2:
        assert sent.get_list("x-api-key") == [TEAM_KEY]
        assert "authorization" not in sent
    else:
        assert sent.get_list("authorization") == [f"Bearer {TEAM_KEY}"]
        assert "x-api-key" not in sent
    assert text_of(raw.parse()) == "Hello with my own key!"
    assert_upstream_kept_the_keys_in(governance_stack, model)


def test_streaming_with_a_virtual_key(governance_stack, model):
    client = anthropic.Anthropic(
        base_url=governance_stack.base_url, api_key=DUMMY_KEY, default_headers={"x-bf-vk": TEAM_KEY}
    )
    with client.messages.stream(model=model, max_tokens=64, messages=user("stream me please, in pieces")) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "stream me please, in pieces"
    assert len(pieces) >= 2, f"expected several text deltas, got {pieces!r}"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert_upstream_kept_the_keys_in(governance_stack, model)


# --------------------------------------------------------------------------- refused


def test_no_virtual_key_is_an_authentication_error(governance_stack, model):
    with vk_client(governance_stack) as client, pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=model, max_tokens=32, messages=user("no key"))
    message = assert_refused(info, anthropic.AuthenticationError, 401, "authentication_error", governance_stack)
    assert "virtual key is required" in message


@pytest.mark.parametrize("where", ["x-bf-vk", "api_key"])
def test_an_unknown_virtual_key_is_an_authentication_error(governance_stack, where):
    if where == "x-bf-vk":
        client = with_vk(governance_stack, UNKNOWN_KEY)
    else:
        client = vk_client(governance_stack, api_key=UNKNOWN_KEY)
    with client, pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=OPENAI_MODEL, max_tokens=32, messages=user("who am I"))
    assert_refused(info, anthropic.AuthenticationError, 401, "authentication_error", governance_stack)


@pytest.mark.parametrize("key", [INACTIVE_KEY, EXPIRED_KEY], ids=["inactive", "expired"])
def test_an_inactive_or_expired_key_is_a_permission_error(governance_stack, key):
    with with_vk(governance_stack, key) as client, pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=OPENAI_MODEL, max_tokens=32, messages=user("let me in"))
    assert_refused(info, anthropic.PermissionDeniedError, 403, "permission_error", governance_stack)


def test_a_provider_or_model_the_key_may_not_use_is_a_permission_error(governance_stack):
    with with_vk(governance_stack, MINI_ONLY_KEY) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.create(model=ANTHROPIC_MODEL, max_tokens=32, messages=user("not my provider"))
        message = assert_refused(info, anthropic.PermissionDeniedError, 403, "permission_error", governance_stack)
        assert "provider `anthropic`" in message

        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.create(model="openai/gpt-4o", max_tokens=32, messages=user("not my model"))
        message = assert_refused(info, anthropic.PermissionDeniedError, 403, "permission_error", governance_stack)
        assert "gpt-4o" in message

        # The one model it may use is served.
        assert text_of(client.messages.create(model=OPENAI_MODEL, max_tokens=32, messages=user("mine"))) == "mine"


def test_the_rate_limit_is_a_rate_limit_error_with_retry_after(governance_stack):
    with with_vk(governance_stack, LIMITED_KEY) as client:
        for i in range(3):
            assert text_of(client.messages.create(model=OPENAI_MODEL, max_tokens=32, messages=user(f"call {i}"))) == (
                f"call {i}"
            )
        assert len(governance_stack.mock_requests()) == 3
        governance_stack.clear_mock_requests()

        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.create(model=OPENAI_MODEL, max_tokens=32, messages=user("one too many"))
    message = assert_refused(info, anthropic.RateLimitError, 429, "rate_limit_error", governance_stack)
    assert "3 requests per 1h" in message
    wait = int(info.value.response.headers["retry-after"])
    assert 3500 <= wait <= 3600, wait


def test_a_spent_budget_is_a_billing_error(governance_stack):
    with with_vk(governance_stack, BUDGET_KEY) as client:
        # The first answer costs more than the $1 budget (several output tokens at $1 each).
        first = client.messages.create(model=OPENAI_MODEL, max_tokens=64, messages=user("spend it all"))
        assert first.usage.output_tokens > 1, first.usage
        governance_stack.clear_mock_requests()

        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.create(model=OPENAI_MODEL, max_tokens=64, messages=user("and a bit more"))
    # 0.75 has no class of its own for 402; 2.x raises its PaymentRequiredError.
    expected = getattr(anthropic, "PaymentRequiredError", anthropic.APIStatusError)
    message = assert_refused(info, expected, 402, "billing_error", governance_stack)
    assert "is spent" in message


def test_a_refused_stream_raises_before_any_event(governance_stack, model):
    opened = False
    with with_vk(governance_stack, INACTIVE_KEY) as client, pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model=model, max_tokens=32, messages=user("stream to nobody")):
            opened = True
    assert not opened, "the stream opened before the refusal"
    assert_refused(info, anthropic.PermissionDeniedError, 403, "permission_error", governance_stack)
