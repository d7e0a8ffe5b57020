// @anthropic-ai/sdk (official TypeScript SDK) against Heimdall: every behavioural test for an
// Anthropic pass-through model and a translated OpenAI model, then one test per feature for
// every provider in providers.json (recorded for the README's provider matrix).
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import {
  ANTHROPIC_MODEL,
  CLIENT_KEY,
  MOCK_ANTHROPIC_KEY,
  MOCK_OPENAI_KEY,
  MODELS,
  OPENAI_MODEL,
  PROVIDERS,
  TINY_PNG_BASE64,
  checkSseGrammar,
  featureTest,
  startStack,
  withTimeout,
  writeShown,
} from './harness.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const SDK_VERSION = JSON.parse(readFileSync(path.join(here, 'node_modules/@anthropic-ai/sdk/package.json'), 'utf8')).version;
const EXPECTED_SDK_VERSION = require('./package.json').dependencies['@anthropic-ai/sdk'];

const WEATHER_TOOL = {
  name: 'get_weather',
  description: 'Get the weather forecast for a city.',
  input_schema: {
    type: 'object',
    properties: { city: { type: 'string' }, days: { type: 'integer' } },
    required: ['city'],
  },
};
const TIME_TOOL = {
  name: 'get_time',
  description: 'Get the local time in a timezone.',
  input_schema: { type: 'object', properties: { tz: { type: 'string' } }, required: ['tz'] },
};

const user = (content) => [{ role: 'user', content }];
const textOf = (msg) => msg.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
const toolUses = (msg) => msg.content.filter((b) => b.type === 'tool_use');
/** Re-send an assistant message as history (only the fields the API accepts). */
const assistantTurn = (msg) => ({
  role: 'assistant',
  content: msg.content.flatMap((b) => {
    if (b.type === 'thinking') return [{ type: 'thinking', thinking: b.thinking, signature: b.signature }];
    if (b.type === 'text') return [{ type: 'text', text: b.text }];
    if (b.type === 'tool_use') return [{ type: 'tool_use', id: b.id, name: b.name, input: b.input }];
    return [];
  }),
});
const assertUsage = (msg) => {
  assert.ok(msg.usage.input_tokens > 0, `input_tokens: ${JSON.stringify(msg.usage)}`);
  assert.ok(msg.usage.output_tokens > 0, `output_tokens: ${JSON.stringify(msg.usage)}`);
};

const ERROR_CASES = [
  [429, Anthropic.RateLimitError, 'rate_limit_error'],
  [401, Anthropic.AuthenticationError, 'authentication_error'],
  [400, Anthropic.BadRequestError, 'invalid_request_error'],
  [500, Anthropic.InternalServerError, 'api_error'],
  [529, Anthropic.OverloadedError, 'overloaded_error'],
];

let stack;
let client;

/** `[[mock:error STATUS retry_after=7]]` reaches the client as the SDK's typed error with an
 * Anthropic error body, the request id, and (for 429) the upstream's retry-after. */
const assertUpstreamError = async (model, status, ErrClass, errorType) => {
  const err = await client.messages
    .create({ model, max_tokens: 32, messages: user(`[[mock:error ${status} retry_after=7]]`) })
    .then(
      () => assert.fail('expected an error'),
      (e) => e,
    );
  assert.ok(err instanceof ErrClass, `${err?.constructor?.name}: ${err?.message}`);
  assert.equal(err.status, status);
  assert.equal(err.error?.type, 'error', JSON.stringify(err.error));
  assert.equal(err.error?.error?.type, errorType, JSON.stringify(err.error));
  assert.equal(err.type, errorType);
  assert.ok(err.requestID, 'request-id header missing on error');
  if (status === 429) assert.equal(err.headers.get('retry-after'), '7');
};

/** The SDK's stream helper yields the echo in several deltas and a complete final message. */
const assertStreamsText = async (model) => {
  const stream = client.messages.stream({ model, max_tokens: 64, messages: user('stream me please, in pieces') });
  const deltas = [];
  stream.on('text', (t) => deltas.push(t));
  const final = await withTimeout(stream.finalMessage(), 20_000, 'stream');
  assert.equal(deltas.join(''), 'stream me please, in pieces');
  assert.ok(deltas.length >= 2, `expected several deltas: ${JSON.stringify(deltas)}`);
  assert.equal(textOf(final), 'stream me please, in pieces');
  assert.equal(final.stop_reason, 'end_turn');
  assertUsage(final);
  return { stream, final };
};

/** Sends a base64 PNG and a question; the mock's answer, which names what image arrived. */
const imageAnswer = async (model) => {
  const msg = await client.messages.create({
    model,
    max_tokens: 64,
    messages: user([
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: TINY_PNG_BASE64 } },
      { type: 'text', text: 'what is this' },
    ]),
  });
  const text = textOf(msg);
  assert.ok(text.startsWith('what is this [image: '), text);
  return text;
};

/** count_tokens for a system prompt, a tool and a message; a positive integer. */
const countedTokens = async (model) => {
  const res = await client.messages.countTokens({
    model,
    system: 'You are helpful.',
    tools: [WEATHER_TOOL],
    messages: user('How many tokens is this sentence?'),
  });
  assert.ok(Number.isInteger(res.input_tokens) && res.input_tokens > 0, JSON.stringify(res));
  return res.input_tokens;
};

// The mock caps cached tokens at the prompt size, so the prompt is longer than 7 tokens.
const CACHED_PROMPT = `[[mock:cached 7]] ${Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ')}`;

before(async () => {
  stack = await startStack('anthropic-sdk');
  client = new Anthropic({ baseURL: stack.baseURL, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 30_000 });
});
after(async () => {
  await stack?.stop();
  writeShown('node-anthropic-sdk', `@anthropic-ai/sdk ${SDK_VERSION}`);
});
beforeEach(async () => {
  await stack.clearMockRequests();
});

test('SDK version and wire style (2026-10-21 + Bearer)', async () => {
  assert.equal(SDK_VERSION, EXPECTED_SDK_VERSION);
  let sent;
  const spy = new Anthropic({
    baseURL: stack.baseURL,
    apiKey: CLIENT_KEY,
    maxRetries: 0,
    fetch: async (url, init) => {
      sent = { url: String(url), headers: new Headers(init.headers) };
      return fetch(url, init);
    },
  });
  const msg = await spy.messages.create({ model: ANTHROPIC_MODEL, max_tokens: 32, messages: user('style check') });
  assert.equal(textOf(msg), 'style check');
  assert.equal(new URL(sent.url).pathname, '/anthropic/v1/messages');
  assert.equal(sent.headers.get('anthropic-version'), '2026-10-21');
  assert.equal(sent.headers.get('authorization'), `Bearer ${CLIENT_KEY}`);
});

// Async inference, the pattern Bifrost documents and its TypeScript users write: submit with
// `x-bf-async: true`, then send the same call with `x-bf-async-id` until `content` is not empty.
for (const model of MODELS) {
  test(`async inference polling loop (${model})`, async () => {
    const params = { model, max_tokens: 1024, messages: user('Write a haiku about gateways') };
    let response = await client.messages.create(params, { headers: { 'x-bf-async': 'true' } });
    const jobId = response.id;
    const deadline = Date.now() + 30_000;
    while (response.content.length === 0) {
      assert.ok(Date.now() < deadline, `job ${jobId} still pending`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      response = await client.messages.create(params, { headers: { 'x-bf-async-id': jobId } });
    }
    assert.equal(textOf(response), 'Write a haiku about gateways');
    assert.equal(response.stop_reason, 'end_turn');
    assertUsage(response);
  });
}

test('models list (auto-pagination) contains the OpenAI model', async () => {
  const ids = [];
  for await (const m of client.models.list({ limit: 1 })) ids.push(m.id);
  assert.ok(ids.includes(OPENAI_MODEL), JSON.stringify(ids));
  assert.equal(new Set(ids).size, ids.length, 'duplicate ids');
});

test('models list uses bare Claude ids (as Anthropic does)', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(ANTHROPIC_MODEL), JSON.stringify(ids));
});

for (const model of MODELS) {
  describe(model, () => {
    test('plain text (non-streaming) + request id', async () => {
      const { data: msg, request_id } = await client.messages
        .create({ model, max_tokens: 64, messages: user('hello heimdall') })
        .withResponse();
      assert.equal(msg.type, 'message');
      assert.equal(msg.role, 'assistant');
      assert.match(msg.id, /^msg_/);
      assert.equal(textOf(msg), 'hello heimdall');
      assert.equal(msg.stop_reason, 'end_turn');
      assertUsage(msg);
      assert.ok(request_id, 'request-id header missing');
      assert.equal(msg._request_id, request_id);
    });

    test('client key is not forwarded upstream', async () => {
      await client.messages.create({ model, max_tokens: 32, messages: user('key check') });
      const calls = await stack.mockRequests();
      assert.ok(calls.length > 0, 'no upstream request');
      const call = calls.at(-1);
      assert.ok(!JSON.stringify(call.headers).includes(CLIENT_KEY), JSON.stringify(call.headers));
      if (model === ANTHROPIC_MODEL) {
        assert.equal(call.path.split('?')[0], '/v1/messages');
        assert.ok(
          call.headers['x-api-key'] === MOCK_ANTHROPIC_KEY || call.headers.authorization === `Bearer ${MOCK_ANTHROPIC_KEY}`,
          JSON.stringify(call.headers),
        );
      } else {
        assert.equal(call.path.split('?')[0], '/v1/chat/completions');
        assert.equal(call.headers.authorization, `Bearer ${MOCK_OPENAI_KEY}`);
        assert.equal(call.body.model, 'gpt-4o-mini');
      }
    });

    test('streaming text via .stream() / finalMessage()', async () => {
      const { stream } = await assertStreamsText(model);
      assert.ok(stream.request_id, 'request-id missing on stream');
    });

    for (const [prompt, ending] of [
      ['grammar check', 'message_stop'],
      ['Weather? [[mock:tool get_weather {"city":"Paris"}]] [[mock:tool get_time]]', 'message_stop'],
      ['[[mock:reasoning let me think]] hi there', 'message_stop'],
      ['[[mock:stream_error]] hi there', 'error'],
    ]) {
      test(`raw stream passes the strict grammar checker: ${prompt}`, async () => {
        const response = await client.messages
          .create({ model, max_tokens: 64, stream: true, messages: user(prompt) })
          .asResponse();
        const text = await withTimeout(response.text(), 20_000, 'raw stream');
        const { ok, report } = checkSseGrammar(text, ending);
        assert.ok(ok, report);
      });
    }

    test('raw stream event grammar', async () => {
      const stream = await client.messages.create({ model, max_tokens: 64, stream: true, messages: user('grammar check') });
      const events = [];
      for await (const ev of stream) events.push(ev);
      const types = events.map((e) => e.type);
      assert.equal(types[0], 'message_start');
      assert.equal(types.at(-1), 'message_stop');
      const starts = events.filter((e) => e.type === 'content_block_start').map((e) => e.index);
      assert.deepEqual(starts, [...starts.keys()]);
      const delta = events.find((e) => e.type === 'message_delta');
      assert.equal(delta.delta.stop_reason, 'end_turn');
      assert.ok(delta.usage.output_tokens > 0);
    });

    test('stop reason max_tokens when streaming', async () => {
      const final = await withTimeout(
        client.messages.stream({ model, max_tokens: 64, messages: user('[[mock:finish length]] cut') }).finalMessage(),
        20_000,
      );
      assert.equal(final.stop_reason, 'max_tokens');
      assertUsage(final);
    });

    test('streamed tool call: input parsed exactly', async () => {
      const stream = client.messages.stream({
        model,
        max_tokens: 256,
        tools: [WEATHER_TOOL],
        messages: user('Weather? [[mock:tool get_weather {"city":"Paris","days":3}]]'),
      });
      const jsonDeltas = [];
      stream.on('inputJson', (partial) => jsonDeltas.push(partial));
      const final = await withTimeout(stream.finalMessage(), 20_000);
      const calls = toolUses(final);
      assert.equal(calls.length, 1, JSON.stringify(final.content));
      assert.equal(calls[0].name, 'get_weather');
      assert.deepEqual(calls[0].input, { city: 'Paris', days: 3 });
      assert.ok(calls[0].id);
      assert.equal(final.stop_reason, 'tool_use');
      assert.ok(jsonDeltas.length >= 1);
      assertUsage(final);
    });

    test('two parallel streamed tool calls', async () => {
      const final = await withTimeout(
        client.messages
          .stream({
            model,
            max_tokens: 256,
            tools: [WEATHER_TOOL, TIME_TOOL],
            messages: user('[[mock:tool get_weather {"city":"Paris","days":3}]] [[mock:tool get_time {"tz":"Europe/Paris"}]]'),
          })
          .finalMessage(),
        20_000,
      );
      const calls = toolUses(final);
      assert.deepEqual(
        calls.map((c) => [c.name, c.input]),
        [
          ['get_weather', { city: 'Paris', days: 3 }],
          ['get_time', { tz: 'Europe/Paris' }],
        ],
      );
      assert.notEqual(calls[0].id, calls[1].id);
      assert.equal(final.stop_reason, 'tool_use');
    });

    test('tool call sent as one whole fragment', async () => {
      const final = await withTimeout(
        client.messages
          .stream({ model, max_tokens: 256, tools: [WEATHER_TOOL], messages: user('[[mock:tool_whole get_weather {"city":"Oslo","days":1}]]') })
          .finalMessage(),
        20_000,
      );
      assert.deepEqual(toolUses(final).map((c) => c.input), [{ city: 'Oslo', days: 1 }]);
    });

    const roundTrip = async (prompt, tools, results) => {
      const first = await client.messages.create({ model, max_tokens: 256, tools, messages: user(prompt) });
      assert.equal(first.stop_reason, 'tool_use');
      const calls = toolUses(first);
      return [
        ...user(prompt),
        assistantTurn(first),
        { role: 'user', content: results.map((r, i) => ({ type: 'tool_result', tool_use_id: calls[i].id, ...r })) },
      ];
    };

    test('tool result round trip (streamed answer)', async () => {
      const messages = await roundTrip('[[mock:tool get_weather {"city":"Paris","days":3}]]', [WEATHER_TOOL], [{ content: 'sunny, 21C' }]);
      const final = await withTimeout(client.messages.stream({ model, max_tokens: 256, tools: [WEATHER_TOOL], messages }).finalMessage(), 20_000);
      assert.equal(textOf(final), 'tool said: sunny, 21C');
      assert.equal(final.stop_reason, 'end_turn');
    });

    test('parallel tool results round trip', async () => {
      const messages = await roundTrip(
        '[[mock:tool get_weather {"city":"Paris"}]] [[mock:tool get_time {"tz":"UTC"}]]',
        [WEATHER_TOOL, TIME_TOOL],
        [{ content: 'rainy' }, { content: [{ type: 'text', text: '12:00' }] }],
      );
      const msg = await client.messages.create({ model, max_tokens: 256, tools: [WEATHER_TOOL, TIME_TOOL], messages });
      assert.equal(textOf(msg), 'tool said: rainy | 12:00');
    });

    test('tool result with is_error', async () => {
      const messages = await roundTrip('[[mock:tool get_weather {"city":"Atlantis"}]]', [WEATHER_TOOL], [
        { content: 'city not found', is_error: true },
      ]);
      const msg = await client.messages.create({ model, max_tokens: 256, tools: [WEATHER_TOOL], messages });
      assert.equal(textOf(msg), 'tool said: [tool error] city not found');
    });

    test('base64 image reaches the upstream', async () => {
      const text = await imageAnswer(model);
      assert.ok(text.includes('image/png'), text);
    });

    test('URL image reaches the upstream (streamed)', async () => {
      const url = 'https://example.com/heimdall-cat.png';
      const final = await withTimeout(
        client.messages
          .stream({
            model,
            max_tokens: 64,
            messages: user([
              { type: 'text', text: 'describe' },
              { type: 'image', source: { type: 'url', url } },
            ]),
          })
          .finalMessage(),
        20_000,
      );
      assert.equal(textOf(final), `describe [image: ${url}]`);
    });

    for (const [status, ErrClass, errorType] of ERROR_CASES) {
      test(`upstream ${status} -> ${ErrClass.name}`, () => assertUpstreamError(model, status, ErrClass, errorType));
    }

    test('a transient upstream 529 is retried (gateway or SDK)', async () => {
      const retrying = new Anthropic({ baseURL: stack.baseURL, apiKey: CLIENT_KEY, maxRetries: 2, timeout: 30_000 });
      const key = `retry-${Math.random().toString(36).slice(2, 10)}`;
      const msg = await retrying.messages.create({
        model,
        max_tokens: 32,
        messages: user(`[[mock:fail_first 1 529 ${key}]] recovered`),
      });
      assert.equal(textOf(msg), 'recovered');
      assert.ok((await stack.mockRequests()).length >= 2);
    });

    test('upstream 429 when opening a stream', async () => {
      const stream = client.messages.stream({ model, max_tokens: 32, messages: user('[[mock:error 429 retry_after=2]]') });
      await assert.rejects(withTimeout(stream.finalMessage(), 20_000), Anthropic.RateLimitError);
    });

    test('error event mid-stream rejects finalMessage()', async () => {
      const stream = client.messages.stream({ model, max_tokens: 64, messages: user('[[mock:stream_error]] partial answer here') });
      await assert.rejects(withTimeout(stream.finalMessage(), 20_000), (e) => {
        assert.ok(e instanceof Anthropic.APIError, `${e?.constructor?.name}: ${e?.message}`);
        return true;
      });
    });

    test('stream cut mid-way is an error, not a hang', async () => {
      const started = Date.now();
      const stream = client.messages.stream({ model, max_tokens: 64, messages: user('[[mock:cut]] this reply will be cut in the middle') });
      let final;
      await assert.rejects(
        withTimeout(
          stream.finalMessage().then((m) => {
            final = m;
          }),
          15_000,
          'cut stream',
        ).then(() => {
          throw new Error(`cut stream ended "successfully": ${JSON.stringify(final)}`);
        }),
        (e) => {
          assert.ok(!/did not finish within|ended "successfully"/.test(e.message), e.message);
          return true;
        },
      );
      assert.ok(Date.now() - started < 15_000);
    });

    test('count_tokens returns a positive integer', () => countedTokens(model));

    test('models.retrieve', async () => {
      const info = await client.models.retrieve(model);
      assert.equal(info.id, model);
      assert.equal(info.type, 'model');
    });
  });
}

// Direct keys: with `client.allow_direct_keys`, a client's own provider key (not a virtual
// `sk-bf-` key) in `x-api-key` or `Authorization: Bearer` is used upstream for that request in
// place of the configured keys; when both headers carry one, the header native to the target
// provider wins. Written the way users are told to do it: a dummy `apiKey` for the SDK, the real
// key in the request's `headers`. This SDK sends its `apiKey` as `Authorization: Bearer`, so the
// Claude call carries both headers, and only `x-api-key` may reach the upstream.
const DIRECT_ANTHROPIC_KEY = 'sk-ant-direct-user-key-0001';
const DIRECT_OPENAI_KEY = 'sk-proj-direct-user-key-0002';
const DUMMY_KEY = 'dummy-key';

/** The documented client, recording the headers of each request it sends. */
function dummyKeyClient(target) {
  const sent = [];
  const c = new Anthropic({
    baseURL: target.baseURL,
    apiKey: DUMMY_KEY,
    maxRetries: 0,
    fetch: async (url, init) => {
      sent.push(new Headers(init.headers));
      return fetch(url, init);
    },
  });
  return { client: c, sent };
}

const helloFromClaude = (c) =>
  c.messages
    .create(
      { model: 'claude-sonnet-4-5-20250929', max_tokens: 1000, messages: [{ role: 'user', content: 'Hello from Claude!' }] },
      { headers: { 'x-api-key': DIRECT_ANTHROPIC_KEY } },
    )
    .withResponse();

const helloFromOpenAI = (c) =>
  c.messages
    .create(
      { model: 'openai/gpt-4o-mini', max_tokens: 1000, messages: [{ role: 'user', content: 'Hello from OpenAI!' }] },
      { headers: { Authorization: `Bearer ${DIRECT_OPENAI_KEY}` } },
    )
    .withResponse();

/** The one upstream request the mock received on `upstreamPath`. */
async function onlyUpstreamCall(target, upstreamPath) {
  const calls = await target.mockRequests();
  const matching = calls.filter((c) => c.path.split('?')[0] === upstreamPath);
  assert.equal(matching.length, 1, JSON.stringify(calls.map((c) => c.path)));
  return matching[0];
}

function assertDirectKeyAnswer(response, provider, model) {
  const headers = JSON.stringify(Object.fromEntries(response.headers));
  assert.equal(response.headers.get('x-bf-provider'), provider, headers);
  assert.ok((response.headers.get('x-bf-model') ?? '').endsWith(model.split('/').at(-1)), headers);
  assert.equal(response.headers.get('x-bf-key-name'), 'direct', headers);
  assert.equal(response.headers.get('x-bf-attempts'), '1', headers);
}

describe('direct keys (client.allow_direct_keys)', () => {
  let direct;
  before(async () => {
    direct = await startStack('anthropic-sdk-direct-keys', { configPatch: { client: { allow_direct_keys: true } } });
  });
  after(async () => {
    await direct?.stop();
  });
  beforeEach(async () => {
    await direct.clearMockRequests();
  });

  test('an Anthropic key in x-api-key goes upstream, not the SDK key or the pool key', async () => {
    const { client: c, sent } = dummyKeyClient(direct);
    const { data, response } = await helloFromClaude(c);
    assert.equal(sent[0].get('x-api-key'), DIRECT_ANTHROPIC_KEY);
    assert.equal(sent[0].get('authorization'), `Bearer ${DUMMY_KEY}`);
    assert.equal(textOf(data), 'Hello from Claude!');
    const call = await onlyUpstreamCall(direct, '/v1/messages');
    const upstream = JSON.stringify(call.headers);
    assert.equal(call.headers['x-api-key'], DIRECT_ANTHROPIC_KEY, upstream);
    assert.ok(!upstream.includes(MOCK_ANTHROPIC_KEY), upstream);
    assert.ok(!upstream.includes(DUMMY_KEY), upstream);
    assertDirectKeyAnswer(response, 'anthropic', ANTHROPIC_MODEL);
  });

  test('an OpenAI key in Authorization goes upstream, not the pool key', async () => {
    const { client: c, sent } = dummyKeyClient(direct);
    const { data, response } = await helloFromOpenAI(c);
    assert.equal(sent[0].get('authorization'), `Bearer ${DIRECT_OPENAI_KEY}`);
    assert.equal(textOf(data), 'Hello from OpenAI!');
    const call = await onlyUpstreamCall(direct, '/v1/chat/completions');
    const upstream = JSON.stringify(call.headers);
    assert.equal(call.headers.authorization, `Bearer ${DIRECT_OPENAI_KEY}`, upstream);
    assert.ok(!upstream.includes(MOCK_OPENAI_KEY), upstream);
    assert.ok(!upstream.includes(DUMMY_KEY), upstream);
    assertDirectKeyAnswer(response, 'openai', OPENAI_MODEL);
  });
});

test('without allow_direct_keys the same calls use the pool keys, and no client key goes upstream', async () => {
  const { client: c } = dummyKeyClient(stack);
  for (const [hello, upstreamPath, poolKey, directKey] of [
    [helloFromClaude, '/v1/messages', MOCK_ANTHROPIC_KEY, DIRECT_ANTHROPIC_KEY],
    [helloFromOpenAI, '/v1/chat/completions', MOCK_OPENAI_KEY, DIRECT_OPENAI_KEY],
  ]) {
    await stack.clearMockRequests();
    const { data } = await hello(c);
    assert.match(textOf(data), /^Hello from /);
    const call = await onlyUpstreamCall(stack, upstreamPath);
    const upstream = JSON.stringify(call.headers);
    assert.ok(upstream.includes(poolKey), upstream);
    assert.ok(!upstream.includes(directKey), upstream);
    assert.ok(!upstream.includes(DUMMY_KEY), upstream);
  }
});

const PARALLEL_TOOLS_PROMPT =
  'Two things. [[mock:tool get_weather {"city":"Paris","days":3}]] [[mock:tool get_time {"tz":"Europe/Paris"}]]';
const upstreamPaths = async () => (await stack.mockRequests()).map((c) => c.path);

for (const provider of PROVIDERS) {
  const { model } = provider;
  describe(`provider ${provider.id} (${model})`, () => {
    featureTest(provider, 'text', async () => {
      const msg = await client.messages.create({ model, max_tokens: 64, messages: user('hello from every provider') });
      assert.match(msg.id, /^msg_/);
      assert.equal(textOf(msg), 'hello from every provider');
      assert.equal(msg.stop_reason, 'end_turn');
      assertUsage(msg);
      const paths = await upstreamPaths();
      assert.ok(paths.some((p) => p.includes(provider.upstream)), JSON.stringify(paths));
    });

    featureTest(provider, 'stream', async () => {
      await assertStreamsText(model);
      const paths = await upstreamPaths();
      assert.ok(paths.some((p) => p.includes(provider.upstream)), JSON.stringify(paths));
    });

    featureTest(provider, 'tools', async () => {
      const stream = client.messages.stream({
        model,
        max_tokens: 256,
        tools: [WEATHER_TOOL, TIME_TOOL],
        messages: user(PARALLEL_TOOLS_PROMPT),
      });
      const jsonDeltas = [];
      stream.on('inputJson', (partial) => jsonDeltas.push(partial));
      const final = await withTimeout(stream.finalMessage(), 20_000, 'tool stream');
      const calls = toolUses(final);
      assert.deepEqual(
        calls.map((c) => [c.name, c.input]),
        [
          ['get_weather', { city: 'Paris', days: 3 }],
          ['get_time', { tz: 'Europe/Paris' }],
        ],
      );
      assert.notEqual(calls[0].id, calls[1].id);
      assert.ok(jsonDeltas.length >= 2, 'each tool input arrives as input_json deltas');
      assert.equal(final.stop_reason, 'tool_use');
      assertUsage(final);
    });

    featureTest(provider, 'tool_result', async () => {
      const prompt = '[[mock:tool get_weather {"city":"Paris"}]] [[mock:tool get_time {"tz":"UTC"}]]';
      const tools = [WEATHER_TOOL, TIME_TOOL];
      const first = await client.messages.create({ model, max_tokens: 256, tools, messages: user(prompt) });
      assert.equal(first.stop_reason, 'tool_use');
      const calls = toolUses(first);
      assert.equal(calls.length, 2, JSON.stringify(first.content));
      const messages = [
        ...user(prompt),
        assistantTurn(first),
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: calls[0].id, content: 'sunny, 21C' },
            { type: 'tool_result', tool_use_id: calls[1].id, content: 'noon', is_error: true },
          ],
        },
      ];
      const final = await withTimeout(client.messages.stream({ model, max_tokens: 256, tools, messages }).finalMessage(), 20_000);
      assert.equal(textOf(final), 'tool said: sunny, 21C | [tool error] noon');
      assert.equal(final.stop_reason, 'end_turn');
    });

    featureTest(provider, 'images', async () => {
      const text = await imageAnswer(model);
      // Ollama's `images` are bare base64: the media type cannot reach it.
      if (provider.image_media_type) assert.ok(text.includes('image/png'), text);
    });

    featureTest(provider, 'thinking', async () => {
      // Thinking streams before the answer and goes back in history (with its signature).
      const prompt = '[[mock:reasoning I should look it up]] [[mock:tool get_weather {"city":"Paris"}]]';
      const thinking = { type: 'enabled', budget_tokens: 1024 };
      const first = await withTimeout(
        client.messages.stream({ model, max_tokens: 2048, thinking, tools: [WEATHER_TOOL], messages: user(prompt) }).finalMessage(),
        20_000,
      );
      assert.equal(first.content[0].type, 'thinking', JSON.stringify(first.content));
      assert.equal(first.content[0].thinking, 'I should look it up');
      // Unsigned reasoning (OpenAI-style, Ollama) has nothing to sign: the field is empty.
      if (provider.thinking_signature) assert.ok(first.content[0].signature, 'signed reasoning must keep its signature');
      else assert.equal(first.content[0].signature, '', JSON.stringify(first.content[0]));
      const calls = toolUses(first);
      assert.deepEqual(calls.map((c) => c.input), [{ city: 'Paris' }]);
      const messages = [
        ...user(prompt),
        assistantTurn(first),
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: calls[0].id, content: 'cloudy' }] },
      ];
      const final = await client.messages.create({ model, max_tokens: 2048, thinking, tools: [WEATHER_TOOL], messages });
      assert.equal(textOf(final), 'tool said: cloudy');
      return provider.thinking_signature ? undefined : 'unsigned';
    });

    featureTest(provider, 'cache_usage', async () => {
      const final = await withTimeout(
        client.messages.stream({ model, max_tokens: 64, messages: user(CACHED_PROMPT) }).finalMessage(),
        20_000,
      );
      assertUsage(final);
      if (provider.cache) {
        assert.equal(final.usage.cache_read_input_tokens, 7, JSON.stringify(final.usage));
        return undefined;
      }
      // The dialect reports no cache usage: the field stays absent (or zero), never invented.
      assert.ok(!final.usage.cache_read_input_tokens, JSON.stringify(final.usage));
      return 'none';
    });

    featureTest(provider, 'errors', async () => {
      for (const [status, ErrClass, errorType] of ERROR_CASES) await assertUpstreamError(model, status, ErrClass, errorType);
      const opening = client.messages.stream({ model, max_tokens: 32, messages: user('[[mock:error 429 retry_after=3]]') });
      await assert.rejects(withTimeout(opening.finalMessage(), 20_000), Anthropic.RateLimitError);
      const midway = client.messages.stream({ model, max_tokens: 64, messages: user('[[mock:stream_error]] partial answer here') });
      await assert.rejects(withTimeout(midway.finalMessage(), 20_000), (e) => {
        assert.ok(e instanceof Anthropic.APIError, `${e?.constructor?.name}: ${e?.message}`);
        return true;
      });
    });

    featureTest(provider, 'count_tokens', async () => {
      await countedTokens(model);
      const paths = await upstreamPaths();
      if (provider.count_tokens === 'upstream') {
        assert.ok(paths.some((p) => p.includes('count')), JSON.stringify(paths));
        return undefined;
      }
      assert.deepEqual(paths, [], 'a locally estimated count must not reach the upstream');
      return 'estimate';
    });

    featureTest(provider, 'models', async () => {
      const ids = [];
      for await (const m of client.models.list()) ids.push(m.id);
      assert.ok(ids.includes(model), JSON.stringify(ids));
      const info = await client.models.retrieve(model);
      assert.equal(info.id, model);
      assert.equal(info.type, 'model');
      return provider.models === 'config' ? 'configured' : undefined;
    });
  });
}
