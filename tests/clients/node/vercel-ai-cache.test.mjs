// The semantic cache with the Vercel AI SDK (`ai` + `@ai-sdk/anthropic`): a repeated streamText
// call is answered from the cache (one upstream request for two streams) and yields the same
// deltas, finish reason and usage. Runs in the vercel-ai suite, against a stack of its own.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { streamText } from 'ai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { CACHE_CONFIG, MODELS, startStack, withTimeout } from './harness.mjs';

globalThis.AI_SDK_LOG_WARNINGS = false;

let stack;

before(async () => {
  stack = await startStack('vercel-ai-cache', { configPatch: CACHE_CONFIG });
});
after(async () => {
  await stack?.stop();
});

for (const model of MODELS) {
  test(`${model}: a repeated streamText is replayed from the cache`, async () => {
    await stack.clearMockRequests();
    const anthropic = createAnthropic({
      baseURL: `${stack.baseURL}/v1`,
      apiKey: 'dummy-key',
      headers: { 'x-bf-cache-key': `vercel-${model}` },
    });
    const runs = [];
    for (let i = 0; i < 2; i++) {
      const result = streamText({
        model: anthropic(model),
        prompt: 'stream me a cached answer',
        maxRetries: 0,
        maxOutputTokens: 256,
      });
      const deltas = [];
      await withTimeout(
        (async () => {
          for await (const d of result.textStream) deltas.push(d);
        })(),
        30_000,
        'streamText',
      );
      const response = await result.response;
      runs.push({
        text: deltas.join(''),
        finish: await result.finishReason,
        usage: await result.usage,
        hit: response.headers?.['x-bf-cache-hit'],
      });
    }
    assert.equal(runs[0].text, 'stream me a cached answer');
    assert.deepEqual(runs[1].text, runs[0].text);
    assert.equal(runs[1].finish, runs[0].finish);
    assert.deepEqual(runs[1].usage, runs[0].usage);
    assert.deepEqual([runs[0].hit, runs[1].hit], ['false', 'true']);
    const calls = (await stack.mockRequests()).filter((r) => /\/(messages|chat\/completions)$/.test(r.path));
    assert.equal(calls.length, 1);
  });
}
