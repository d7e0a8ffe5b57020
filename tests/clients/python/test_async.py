"""Async inference with the Python SDK, the way Bifrost's users are told to do it: submit with
`x-bf-async: true`, then send the same call again with `x-bf-async-id` until `content` is no longer
empty. The loop below is that pattern as a user writes it, run against the gateway unchanged;
only the model comes from the test's parameter.
"""

from __future__ import annotations

import time

import anthropic
import pytest
from conftest import text_of


def test_the_documented_polling_loop(stack, model):
    client = anthropic.Anthropic(base_url=stack.base_url, api_key="dummy-key")

    # Submit the request as a background job: the answer comes at once, content empty.
    response = client.messages.create(
        model=model,
        max_tokens=1024,
        messages=[{"role": "user", "content": "Write a haiku about gateways"}],
        extra_headers={"x-bf-async": "true"},
    )
    job_id = response.id

    # Re-send the same call with the job id until the content arrives.
    deadline = time.monotonic() + 30
    while not response.content:
        assert time.monotonic() < deadline, f"job {job_id} still pending"
        time.sleep(0.2)
        response = client.messages.create(
            model=model,
            max_tokens=1024,
            messages=[{"role": "user", "content": "Write a haiku about gateways"}],
            extra_headers={"x-bf-async-id": job_id},
        )

    assert text_of(response) == "Write a haiku about gateways"
    assert response.stop_reason == "end_turn"
    assert response.usage.output_tokens > 0


def test_a_failed_job_raises_the_sdk_error_of_its_status(stack, model):
    client = anthropic.Anthropic(base_url=stack.base_url, api_key="dummy-key", max_retries=0)
    submitted = client.messages.create(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "[[mock:error 400 type=invalid_request_error]]"}],
        extra_headers={"x-bf-async": "true"},
    )
    deadline = time.monotonic() + 30
    with pytest.raises(anthropic.BadRequestError):
        while time.monotonic() < deadline:
            polled = client.messages.create(
                model=model,
                max_tokens=64,
                messages=[{"role": "user", "content": "[[mock:error 400 type=invalid_request_error]]"}],
                extra_headers={"x-bf-async-id": submitted.id},
            )
            assert not polled.content
            time.sleep(0.1)
