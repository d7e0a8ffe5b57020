// The semantic cache (`semantic_cache` plugin) with @anthropic-ai/sdk: a repeated streamed request
// is replayed from the cache byte for byte, passes the strict grammar checker, and the SDK's
// stream helper reads it like any stream. Runs in the node-anthropic-sdk suite, against a stack of
// its own (providers.json's config plus the plugin, embeddings from the mock).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { CACHE_CONFIG, MODELS, checkSseGrammar, startStack } from './harness.mjs';

let stack;

before(async () => {
  stack = await startStack('anthropic-sdk-cache', { configPatch: CACHE_CONFIG });
});
after(async () => {
  await stack?.stop();
});

const upstreamCalls = async () =>
  (await stack.mockRequests()).filter((r) => /\/(messages|chat\/completions)$/.test(r.path)).length;

for (const model of MODELS) {
  test(`${model}: a repeated stream is replayed exactly`, async () => {
    await stack.clearMockRequests();
    const client = new Anthropic({
      baseURL: stack.baseURL,
      apiKey: 'dummy-key',
      defaultHeaders: { 'x-bf-cache-key': `node-${model}` },
      maxRetries: 0,
    });
    const prompt = 'Tell me a short story about a lighthouse';
    const params = { model, max_tokens: 64, stream: true, messages: [{ role: 'user', content: prompt }] };
    const bodies = [];
    const hits = [];
    for (let i = 0; i < 2; i++) {
      const { response } = await client.messages.create(params).withResponse();
      hits.push(response.headers.get('x-bf-cache-hit'));
      bodies.push(await response.text());
    }
    assert.deepEqual(hits, ['false', 'true']);
    assert.equal(bodies[1], bodies[0]);
    const verdict = checkSseGrammar(bodies[1], 'message_stop');
    assert.ok(verdict.ok, verdict.report);
    const stream = client.messages.stream({ model, max_tokens: 64, messages: params.messages });
    assert.equal(await stream.finalText(), prompt);
    assert.equal(await upstreamCalls(), 1);
  });
}
