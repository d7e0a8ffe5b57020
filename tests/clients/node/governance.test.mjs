// Virtual keys (governance) with @anthropic-ai/sdk, the way Bifrost's users are told to use them:
// a dummy `apiKey` for the SDK and the virtual key in `defaultHeaders: { 'x-bf-vk': ... }`, or the
// virtual key (`sk-bf-…`) as the SDK's own key, which this SDK sends as `Authorization: Bearer`.
// Every refusal must come back as the SDK's typed error, with Anthropic's error body, before
// anything reaches the upstream: 401 `authentication_error` (no key, unknown key), 403
// `permission_error` (inactive, expired, provider or model not allowed), 402 `billing_error`
// (budget spent), 429 `rate_limit_error` with `retry-after`. Runs in the node-anthropic-sdk suite,
// against a stack of its own (the keys below, `client.enforce_auth_on_inference` on). Each key
// belongs to one test; the limited ones start from zero and reset after an hour or a month, so
// nothing resets while the tests run.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import {
  ANTHROPIC_MODEL,
  MOCK_ANTHROPIC_KEY,
  MOCK_OPENAI_KEY,
  MODELS,
  OPENAI_MODEL,
  startStack,
  withTimeout,
} from './harness.mjs';

const TEAM_KEY = 'sk-bf-team-key';
const MINI_ONLY_KEY = 'sk-bf-mini-only';
const INACTIVE_KEY = 'sk-bf-switched-off';
const EXPIRED_KEY = 'sk-bf-expired';
const LIMITED_KEY = 'sk-bf-three-an-hour';
const BUDGET_KEY = 'sk-bf-one-dollar';
const UNKNOWN_KEY = 'sk-bf-nobody-knows-me';
const DUMMY_KEY = 'dummy-key';

const GOVERNANCE_CONFIG = {
  client: { enforce_auth_on_inference: true },
  // Output at $1 a token, so that one answer spends the $1 budget below.
  pricing: { 'gpt-4o-mini': { input: 0, output: 1_000_000 } },
  governance: {
    virtual_keys: [
      // A model without a provider prefix goes to one of the key's providers that allow it,
      // chosen by weight; so each provider names its model, and a bare Claude model can only go
      // to Anthropic.
      {
        id: 'vk-team',
        value: TEAM_KEY,
        provider_configs: [
          { provider: 'openai', allowed_models: ['gpt-4o-mini'], key_ids: ['*'] },
          { provider: 'anthropic', allowed_models: [ANTHROPIC_MODEL], key_ids: ['*'] },
        ],
      },
      {
        id: 'vk-mini-only',
        value: MINI_ONLY_KEY,
        provider_configs: [{ provider: 'openai', allowed_models: ['gpt-4o-mini'], key_ids: ['*'] }],
      },
      { id: 'vk-off', value: INACTIVE_KEY, is_active: false },
      { id: 'vk-expired', value: EXPIRED_KEY, expires_at: '2020-01-01T00:00:00Z' },
      { id: 'vk-limited', value: LIMITED_KEY, rate_limit: { request_max_limit: 3, request_reset_duration: '1h' } },
      { id: 'vk-budget', value: BUDGET_KEY, budgets: [{ max_limit: 1, reset_duration: '1M' }] },
    ],
  },
};

const user = (content) => [{ role: 'user', content }];
const textOf = (msg) => msg.content.filter((b) => b.type === 'text').map((b) => b.text).join('');

let stack;

before(async () => {
  stack = await startStack('anthropic-sdk-governance', { configPatch: GOVERNANCE_CONFIG });
});
after(async () => {
  await stack?.stop();
});
beforeEach(async () => {
  await stack.clearMockRequests();
});

/**
 * A client for the refusal tests. `maxRetries: 0`: the SDK retries a 429 by itself (twice by
 * default, after its own backoff, since it ignores a retry-after over 60 s), so the refusal would
 * surface seconds late and only after two more refused requests; 401, 402 and 403 are not
 * retried, but these tests do not depend on that.
 */
const vkClient = (opts = {}) =>
  new Anthropic({ baseURL: stack.baseURL, apiKey: DUMMY_KEY, maxRetries: 0, timeout: 30_000, ...opts });
const withVk = (key) => vkClient({ defaultHeaders: { 'x-bf-vk': key } });

/** The error the promise rejects with (failing if it resolves). */
const rejection = (promise) =>
  promise.then(
    () => assert.fail('expected a refusal'),
    (e) => e,
  );

/**
 * The SDK's `ErrClass` with `status` and Anthropic's error body of `errorType`, and nothing went
 * upstream; returns the error's message.
 */
async function assertRefused(err, ErrClass, status, errorType) {
  assert.ok(err instanceof ErrClass, `${err?.constructor?.name}: ${err?.message}`);
  assert.ok(err instanceof Anthropic.APIError);
  assert.equal(err.status, status);
  assert.equal(err.error?.type, 'error', JSON.stringify(err.error));
  assert.equal(err.error?.error?.type, errorType, JSON.stringify(err.error));
  assert.equal(err.type, errorType);
  assert.ok(err.requestID, 'request-id header missing on a refusal');
  assert.deepEqual(await stack.mockRequests(), [], 'a refused request reached the upstream');
  const message = err.error.error.message;
  assert.ok(typeof message === 'string' && message.length > 0, JSON.stringify(err.error));
  return message;
}

/**
 * One upstream call, made with the gateway's configured provider key: neither the virtual key nor
 * the SDK's dummy key went upstream.
 */
async function assertUpstreamKeptTheKeys(model) {
  const calls = await stack.mockRequests();
  assert.equal(calls.length, 1, JSON.stringify(calls.map((c) => c.path)));
  const upstream = JSON.stringify(calls[0].headers);
  assert.ok(!upstream.includes('sk-bf-'), upstream);
  assert.ok(!upstream.includes(DUMMY_KEY), upstream);
  if (model === OPENAI_MODEL) assert.equal(calls[0].headers.authorization, `Bearer ${MOCK_OPENAI_KEY}`, upstream);
  else assert.ok(upstream.includes(MOCK_ANTHROPIC_KEY), upstream);
}

describe('allowed', () => {
  test('the documented example', async () => {
    const client = new Anthropic({
      baseURL: stack.baseURL,
      apiKey: 'dummy-key',
      defaultHeaders: { 'x-bf-vk': 'sk-bf-team-key' },
    });

    const response = await client.messages.create({
      model: 'openai/gpt-4o-mini',
      max_tokens: 1000,
      messages: [{ role: 'user', content: 'Hello from the team!' }],
    });

    assert.equal(textOf(response), 'Hello from the team!');
    assert.equal(response.stop_reason, 'end_turn');
    await assertUpstreamKeptTheKeys(OPENAI_MODEL);
  });

  for (const model of MODELS) {
    test(`the virtual key as the SDK's own key, sent as Authorization: Bearer (${model})`, async () => {
      let sent;
      const client = new Anthropic({
        baseURL: stack.baseURL,
        apiKey: TEAM_KEY,
        fetch: async (url, init) => {
          sent = new Headers(init.headers);
          return fetch(url, init);
        },
      });
      const msg = await client.messages.create({ model, max_tokens: 1000, messages: user('Hello with my own key!') });
      assert.equal(sent.get('authorization'), `Bearer ${TEAM_KEY}`);
      assert.equal(sent.get('anthropic-version'), '2026-10-21');
      assert.equal(sent.get('x-api-key'), null);
      assert.equal(sent.get('x-bf-vk'), null);
      assert.equal(textOf(msg), 'Hello with my own key!');
      await assertUpstreamKeptTheKeys(model);
    });

    test(`streaming with a virtual key (${model})`, async () => {
      const client = new Anthropic({ baseURL: stack.baseURL, apiKey: DUMMY_KEY, defaultHeaders: { 'x-bf-vk': TEAM_KEY } });
      const stream = client.messages.stream({ model, max_tokens: 64, messages: user('stream me please, in pieces') });
      const deltas = [];
      stream.on('text', (t) => deltas.push(t));
      const final = await withTimeout(stream.finalMessage(), 20_000, 'stream');
      assert.equal(deltas.join(''), 'stream me please, in pieces');
      assert.ok(deltas.length >= 2, `expected several deltas: ${JSON.stringify(deltas)}`);
      assert.equal(final.stop_reason, 'end_turn');
      assert.ok(final.usage.output_tokens > 0, JSON.stringify(final.usage));
      await assertUpstreamKeptTheKeys(model);
    });
  }
});

describe('refused', () => {
  for (const model of MODELS) {
    test(`no virtual key is an AuthenticationError (${model})`, async () => {
      const err = await rejection(vkClient().messages.create({ model, max_tokens: 32, messages: user('no key') }));
      const message = await assertRefused(err, Anthropic.AuthenticationError, 401, 'authentication_error');
      assert.match(message, /virtual key is required/);
    });
  }

  for (const [where, client] of [
    ['x-bf-vk', () => withVk(UNKNOWN_KEY)],
    ['apiKey', () => vkClient({ apiKey: UNKNOWN_KEY })],
  ]) {
    test(`an unknown virtual key in ${where} is an AuthenticationError`, async () => {
      const err = await rejection(
        client().messages.create({ model: OPENAI_MODEL, max_tokens: 32, messages: user('who am I') }),
      );
      await assertRefused(err, Anthropic.AuthenticationError, 401, 'authentication_error');
    });
  }

  for (const [what, key] of [
    ['an inactive', INACTIVE_KEY],
    ['an expired', EXPIRED_KEY],
  ]) {
    test(`${what} key is a PermissionDeniedError`, async () => {
      const err = await rejection(
        withVk(key).messages.create({ model: OPENAI_MODEL, max_tokens: 32, messages: user('let me in') }),
      );
      await assertRefused(err, Anthropic.PermissionDeniedError, 403, 'permission_error');
    });
  }

  test('a provider or a model the key may not use is a PermissionDeniedError', async () => {
    const client = withVk(MINI_ONLY_KEY);
    let err = await rejection(
      client.messages.create({ model: ANTHROPIC_MODEL, max_tokens: 32, messages: user('not my provider') }),
    );
    assert.match(await assertRefused(err, Anthropic.PermissionDeniedError, 403, 'permission_error'), /provider `anthropic`/);

    err = await rejection(client.messages.create({ model: 'openai/gpt-4o', max_tokens: 32, messages: user('not my model') }));
    assert.match(await assertRefused(err, Anthropic.PermissionDeniedError, 403, 'permission_error'), /gpt-4o/);

    // The one model it may use is served.
    const msg = await client.messages.create({ model: OPENAI_MODEL, max_tokens: 32, messages: user('mine') });
    assert.equal(textOf(msg), 'mine');
  });

  test('the rate limit is a RateLimitError with retry-after', async () => {
    const client = withVk(LIMITED_KEY);
    for (let i = 0; i < 3; i++) {
      const msg = await client.messages.create({ model: OPENAI_MODEL, max_tokens: 32, messages: user(`call ${i}`) });
      assert.equal(textOf(msg), `call ${i}`);
    }
    assert.equal((await stack.mockRequests()).length, 3);
    await stack.clearMockRequests();

    const err = await rejection(
      client.messages.create({ model: OPENAI_MODEL, max_tokens: 32, messages: user('one too many') }),
    );
    assert.match(await assertRefused(err, Anthropic.RateLimitError, 429, 'rate_limit_error'), /3 requests per 1h/);
    const wait = Number(err.headers.get('retry-after'));
    assert.ok(Number.isInteger(wait) && wait >= 3500 && wait <= 3600, `retry-after: ${err.headers.get('retry-after')}`);
  });

  test('a spent budget is an APIError with status 402 (billing_error)', async () => {
    const client = withVk(BUDGET_KEY);
    // The first answer costs more than the $1 budget (several output tokens at $1 each).
    const first = await client.messages.create({ model: OPENAI_MODEL, max_tokens: 64, messages: user('spend it all') });
    assert.ok(first.usage.output_tokens > 1, JSON.stringify(first.usage));
    await stack.clearMockRequests();

    const err = await rejection(
      client.messages.create({ model: OPENAI_MODEL, max_tokens: 64, messages: user('and a bit more') }),
    );
    // This SDK's class for 402 is PaymentRequiredError, an APIError.
    assert.match(await assertRefused(err, Anthropic.PaymentRequiredError, 402, 'billing_error'), /is spent/);
  });

  for (const model of MODELS) {
    test(`a refused stream raises before any event (${model})`, async () => {
      const events = [];
      const stream = withVk(INACTIVE_KEY).messages.stream({ model, max_tokens: 32, messages: user('stream to nobody') });
      stream.on('streamEvent', (e) => events.push(e));
      const err = await rejection(withTimeout(stream.finalMessage(), 20_000, 'stream'));
      await assertRefused(err, Anthropic.PermissionDeniedError, 403, 'permission_error');
      assert.deepEqual(events, []);
    });
  }
});
