// Vercel AI SDK (`ai` + `@ai-sdk/anthropic`) against Heimdall: every behavioural test for an
// Anthropic pass-through model and a translated OpenAI model, then one test per feature for
// every provider in providers.json (recorded for the README's provider matrix). The SDK has no
// token-count or model-list call, so those two features are not exercised here.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { APICallError, generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { z } from 'zod';
import { CLIENT_KEY, MODELS, PROVIDERS, TINY_PNG_BASE64, featureTest, startStack, withTimeout, writeShown } from './harness.mjs';

// The Anthropic provider warns that it does not know `openai/...` model ids; keep output clean.
globalThis.AI_SDK_LOG_WARNINGS = false;

const require = createRequire(import.meta.url);
const pinned = require('./package.json').dependencies;

// Zod-described tool (no execute: the call is returned to us).
const weatherTool = tool({
  description: 'Get the weather forecast for a city.',
  inputSchema: z.object({ city: z.string(), days: z.number().int().optional() }),
});
// JSON-Schema-described tool.
const timeTool = tool({
  description: 'Get the local time in a timezone.',
  inputSchema: jsonSchema({
    type: 'object',
    properties: { tz: { type: 'string' } },
    required: ['tz'],
    additionalProperties: false,
  }),
});

let stack;
let anthropic;

before(async () => {
  stack = await startStack('vercel-ai');
  // @ai-sdk/anthropic appends `/messages` to baseURL, so baseURL must end in `/v1`.
  anthropic = createAnthropic({ baseURL: `${stack.baseURL}/v1`, apiKey: CLIENT_KEY });
});
after(async () => {
  await stack?.stop();
  writeShown('vercel-ai', `ai ${pinned.ai} + @ai-sdk/anthropic ${pinned['@ai-sdk/anthropic']}`);
});
beforeEach(async () => {
  await stack.clearMockRequests();
});

test('pinned versions are the ones loaded', () => {
  assert.equal(require('ai/package.json').version, pinned.ai);
  assert.equal(require('@ai-sdk/anthropic/package.json').version, pinned['@ai-sdk/anthropic']);
});

const collect = async (stream) => {
  const parts = [];
  for await (const p of stream) parts.push(p);
  return parts;
};

/** streamText yields the echo in several deltas, then finish reason and usage. */
const assertStreamsText = async (model) => {
  const result = streamText({ model, prompt: 'stream me please, in pieces', maxRetries: 0, maxOutputTokens: 256 });
  const deltas = await withTimeout(collect(result.textStream), 20_000, 'textStream');
  assert.equal(deltas.join(''), 'stream me please, in pieces');
  assert.ok(deltas.length >= 2, JSON.stringify(deltas));
  assert.equal(await result.finishReason, 'stop');
  const usage = await result.usage;
  assert.ok(usage.inputTokens > 0 && usage.outputTokens > 0, JSON.stringify(usage));
};

/** Sends a base64 PNG and a question; the mock's answer, which names what image arrived. */
const imageAnswer = async (model) => {
  const result = await generateText({
    model,
    maxRetries: 0,
    maxOutputTokens: 256,
    messages: [
      {
        role: 'user',
        content: [
          { type: 'image', image: TINY_PNG_BASE64, mediaType: 'image/png' },
          { type: 'text', text: 'what is this' },
        ],
      },
    ],
  });
  assert.ok(result.text.startsWith('what is this [image: '), result.text);
  return result.text;
};

for (const modelId of MODELS) {
  describe(modelId, () => {
    const model = () => anthropic(modelId);

    test('generateText: plain text', async () => {
      const result = await generateText({ model: model(), prompt: 'hello heimdall', maxRetries: 0, maxOutputTokens: 256 });
      assert.equal(result.text, 'hello heimdall');
      assert.equal(result.finishReason, 'stop');
      assert.ok(result.usage.inputTokens > 0, JSON.stringify(result.usage));
      assert.ok(result.usage.outputTokens > 0, JSON.stringify(result.usage));
      assert.ok(result.response.headers?.['request-id'], 'request-id header missing');
    });

    test('streamText: text deltas, finish reason, usage', () => assertStreamsText(model()));

    test('streamText: finish reason length', async () => {
      const result = streamText({ model: model(), prompt: '[[mock:finish length]] cut', maxRetries: 0, maxOutputTokens: 256 });
      await withTimeout(collect(result.textStream), 20_000);
      assert.equal(await result.finishReason, 'length');
    });

    test('generateText: zod tool call, input parsed exactly', async () => {
      const result = await generateText({
        model: model(),
        prompt: 'Weather? [[mock:tool get_weather {"city":"Paris","days":3}]]',
        tools: { get_weather: weatherTool },
        maxRetries: 0,
        maxOutputTokens: 256,
      });
      assert.equal(result.finishReason, 'tool-calls');
      assert.deepEqual(
        result.toolCalls.map((c) => [c.toolName, c.input]),
        [['get_weather', { city: 'Paris', days: 3 }]],
      );
    });

    test('streamText: two parallel tool calls (zod + jsonSchema)', async () => {
      const result = streamText({
        model: model(),
        prompt: '[[mock:tool get_weather {"city":"Paris","days":3}]] [[mock:tool get_time {"tz":"Europe/Paris"}]]',
        tools: { get_weather: weatherTool, get_time: timeTool },
        maxRetries: 0,
        maxOutputTokens: 256,
      });
      const parts = await withTimeout(collect(result.fullStream), 20_000, 'fullStream');
      const errors = parts.filter((p) => p.type === 'error');
      assert.deepEqual(errors, []);
      const calls = await result.toolCalls;
      assert.deepEqual(
        calls.map((c) => [c.toolName, c.input]),
        [
          ['get_weather', { city: 'Paris', days: 3 }],
          ['get_time', { tz: 'Europe/Paris' }],
        ],
      );
      assert.notEqual(calls[0].toolCallId, calls[1].toolCallId);
      assert.equal(await result.finishReason, 'tool-calls');
    });

    test('multi-step: tool executes, result goes back, model answers', async () => {
      const result = await generateText({
        model: model(),
        prompt: '[[mock:tool get_weather {"city":"Paris","days":3}]]',
        tools: {
          get_weather: tool({
            description: 'Get the weather forecast for a city.',
            inputSchema: z.object({ city: z.string(), days: z.number().int().optional() }),
            execute: async ({ city, days }) => `sunny in ${city} for ${days} days`,
          }),
        },
        stopWhen: stepCountIs(3),
        maxRetries: 0,
        maxOutputTokens: 256,
      });
      assert.equal(result.steps.length, 2, JSON.stringify(result.steps.map((s) => s.finishReason)));
      assert.equal(result.text, 'tool said: sunny in Paris for 3 days');
      assert.equal(result.finishReason, 'stop');
    });

    test('multi-step streaming: failing tool is sent back as an error result', async () => {
      const result = streamText({
        model: model(),
        prompt: '[[mock:tool get_weather {"city":"Atlantis"}]]',
        tools: {
          get_weather: tool({
            description: 'Get the weather forecast for a city.',
            inputSchema: z.object({ city: z.string(), days: z.number().int().optional() }),
            execute: async () => {
              throw new Error('city not found');
            },
          }),
        },
        stopWhen: stepCountIs(3),
        maxRetries: 0,
        maxOutputTokens: 256,
      });
      await withTimeout(collect(result.fullStream), 20_000, 'fullStream');
      const text = await result.text;
      assert.ok(text.startsWith('tool said: [tool error] '), text);
      assert.ok(text.includes('city not found'), text);
    });

    test('image (base64) reaches the upstream', async () => {
      const text = await imageAnswer(model());
      assert.ok(text.includes('image/png'), text);
    });

    for (const [status, errorType] of [
      [429, 'rate_limit_error'],
      [401, 'authentication_error'],
      [529, 'overloaded_error'],
    ]) {
      test(`generateText: upstream ${status} -> APICallError`, async () => {
        const err = await generateText({ model: model(), prompt: `[[mock:error ${status} retry_after=7]]`, maxRetries: 0, maxOutputTokens: 256 }).then(
          () => assert.fail('expected an error'),
          (e) => e,
        );
        assert.ok(APICallError.isInstance(err), `${err?.name}: ${err?.message}`);
        assert.equal(err.statusCode, status);
        assert.equal(JSON.parse(err.responseBody).error.type, errorType);
        assert.ok(err.responseHeaders['request-id'], 'request-id header missing');
        if (status === 429) assert.equal(err.responseHeaders['retry-after'], '7');
        assert.equal(err.isRetryable, status !== 401);
      });
    }

    test('streamText: upstream 429 surfaces as an error part', async () => {
      const result = streamText({ model: model(), prompt: '[[mock:error 429 retry_after=1]]', maxRetries: 0, maxOutputTokens: 256, onError: () => {} });
      const parts = await withTimeout(collect(result.fullStream), 20_000, 'fullStream');
      const error = parts.find((p) => p.type === 'error')?.error;
      assert.ok(APICallError.isInstance(error), String(error));
      assert.equal(error.statusCode, 429);
    });

    test('streamText: stream cut mid-way is an error, not a hang', async () => {
      const result = streamText({
        model: model(),
        prompt: '[[mock:cut]] this reply will be cut in the middle',
        maxRetries: 0,
        maxOutputTokens: 256,
        onError: () => {},
      });
      // The error may arrive as an `error` part or make the stream iteration throw.
      let thrown;
      const parts = await withTimeout(
        collect(result.fullStream).catch((e) => {
          thrown = e;
          return [];
        }),
        15_000,
        'cut stream',
      );
      assert.ok(!/did not finish within/.test(String(thrown?.message)), String(thrown));
      const finish = parts.find((p) => p.type === 'finish');
      const errored = Boolean(thrown) || parts.some((p) => p.type === 'error');
      assert.ok(
        errored || (finish && !['stop', 'tool-calls', 'length'].includes(finish.finishReason)),
        `cut stream looked successful: ${JSON.stringify(parts.map((p) => p.type))} finish=${JSON.stringify(finish)}`,
      );
    });
  });
}

const PARALLEL_TOOLS_PROMPT =
  'Two things. [[mock:tool get_weather {"city":"Paris","days":3}]] [[mock:tool get_time {"tz":"Europe/Paris"}]]';
const OPTS = { maxRetries: 0, maxOutputTokens: 256 };

for (const provider of PROVIDERS) {
  describe(`provider ${provider.id} (${provider.model})`, () => {
    const model = () => anthropic(provider.model);

    featureTest(provider, 'text', async () => {
      const result = await generateText({ model: model(), prompt: 'hello from every provider', ...OPTS });
      assert.equal(result.text, 'hello from every provider');
      assert.equal(result.finishReason, 'stop');
      assert.ok(result.usage.inputTokens > 0 && result.usage.outputTokens > 0, JSON.stringify(result.usage));
    });

    featureTest(provider, 'stream', () => assertStreamsText(model()));

    featureTest(provider, 'tools', async () => {
      const result = streamText({
        model: model(),
        prompt: PARALLEL_TOOLS_PROMPT,
        tools: { get_weather: weatherTool, get_time: timeTool },
        ...OPTS,
      });
      const parts = await withTimeout(collect(result.fullStream), 20_000, 'fullStream');
      assert.deepEqual(parts.filter((p) => p.type === 'error'), []);
      const calls = await result.toolCalls;
      assert.deepEqual(
        calls.map((c) => [c.toolName, c.input]),
        [
          ['get_weather', { city: 'Paris', days: 3 }],
          ['get_time', { tz: 'Europe/Paris' }],
        ],
      );
      assert.notEqual(calls[0].toolCallId, calls[1].toolCallId);
      assert.equal(await result.finishReason, 'tool-calls');
    });

    featureTest(provider, 'tool_result', async () => {
      // Both tools execute; one fails, so its result goes back as an error.
      const result = await generateText({
        model: model(),
        prompt: '[[mock:tool get_weather {"city":"Paris"}]] [[mock:tool get_time {"tz":"UTC"}]]',
        tools: {
          get_weather: tool({ ...weatherTool, execute: async ({ city }) => `sunny in ${city}` }),
          get_time: tool({
            ...timeTool,
            execute: async () => {
              throw new Error('no clock');
            },
          }),
        },
        stopWhen: stepCountIs(3),
        ...OPTS,
      });
      assert.equal(result.steps.length, 2, JSON.stringify(result.steps.map((s) => s.finishReason)));
      assert.ok(result.text.startsWith('tool said: sunny in Paris | [tool error] '), result.text);
      assert.ok(result.text.includes('no clock'), result.text);
      assert.equal(result.finishReason, 'stop');
    });

    featureTest(provider, 'images', async () => {
      const text = await imageAnswer(model());
      // Ollama's `images` are bare base64: the media type cannot reach it.
      if (provider.image_media_type) assert.ok(text.includes('image/png'), text);
    });

    featureTest(provider, 'thinking', async () => {
      // Reasoning streams before the call, and goes back (with its signature) in step two.
      const result = streamText({
        model: model(),
        prompt: '[[mock:reasoning I should look it up]] [[mock:tool get_weather {"city":"Paris"}]]',
        tools: { get_weather: tool({ ...weatherTool, execute: async () => 'cloudy' }) },
        providerOptions: { anthropic: { thinking: { type: 'enabled', budgetTokens: 1024 } } },
        stopWhen: stepCountIs(3),
        maxRetries: 0,
        maxOutputTokens: 2048,
      });
      const parts = await withTimeout(collect(result.fullStream), 20_000, 'fullStream');
      assert.deepEqual(parts.filter((p) => p.type === 'error'), []);
      const steps = await result.steps;
      assert.equal(steps.length, 2, JSON.stringify(steps.map((s) => s.finishReason)));
      assert.equal(steps[0].reasoningText, 'I should look it up');
      const signature = steps[0].reasoning[0].providerOptions?.anthropic?.signature;
      // Unsigned reasoning (OpenAI-style, Ollama) has nothing to sign.
      if (provider.thinking_signature) assert.ok(signature, JSON.stringify(steps[0].reasoning));
      else assert.ok(!signature, JSON.stringify(steps[0].reasoning));
      assert.equal(await result.text, 'tool said: cloudy');
      return provider.thinking_signature ? undefined : 'unsigned';
    });

    featureTest(provider, 'cache_usage', async () => {
      // The mock caps cached tokens at the prompt size, so the prompt is longer than 7 tokens.
      const prompt = `[[mock:cached 7]] ${Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ')}`;
      const result = streamText({ model: model(), prompt, ...OPTS });
      await withTimeout(collect(result.textStream), 20_000, 'textStream');
      const usage = await result.usage;
      assert.ok(usage.inputTokens > 0, JSON.stringify(usage));
      if (provider.cache) {
        assert.equal(usage.inputTokenDetails.cacheReadTokens, 7, JSON.stringify(usage));
        return undefined;
      }
      // The dialect reports no cache usage: nothing cached is invented.
      assert.ok(!usage.inputTokenDetails.cacheReadTokens, JSON.stringify(usage));
      return 'none';
    });

    featureTest(provider, 'errors', async () => {
      for (const [status, errorType] of [
        [429, 'rate_limit_error'],
        [401, 'authentication_error'],
        [400, 'invalid_request_error'],
        [500, 'api_error'],
        [529, 'overloaded_error'],
      ]) {
        const err = await generateText({ model: model(), prompt: `[[mock:error ${status} retry_after=7]]`, ...OPTS }).then(
          () => assert.fail('expected an error'),
          (e) => e,
        );
        assert.ok(APICallError.isInstance(err), `${err?.name}: ${err?.message}`);
        assert.equal(err.statusCode, status);
        assert.equal(JSON.parse(err.responseBody).error.type, errorType, err.responseBody);
        if (status === 429) assert.equal(err.responseHeaders['retry-after'], '7');
      }
      const result = streamText({ model: model(), prompt: '[[mock:stream_error]] partial answer here', ...OPTS, onError: () => {} });
      const parts = await withTimeout(collect(result.fullStream), 20_000, 'fullStream');
      assert.ok(parts.some((p) => p.type === 'error'), JSON.stringify(parts.map((p) => p.type)));
    });
  });
}
