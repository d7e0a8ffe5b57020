// Claude Code (`@anthropic-ai/claude-code`, print mode) against Heimdall with a translated
// OpenAI model, including a real tool-use round trip through Claude Code's own tools, the Bash
// round trip through every provider in providers.json (recorded for the README's provider
// matrix), and its `anthropic-beta` header with and without the config allowing it upstream.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ANTHROPIC_MODEL, OPENAI_MODEL, PROVIDERS, featureTest, providerById, startStack, writeShown } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const PINNED = require('./package.json').dependencies['@anthropic-ai/claude-code'];
const CLAUDE_BIN = path.join(here, 'node_modules', '.bin', 'claude');
const RUN_TIMEOUT_MS = 90_000;

let stack;
let sandbox;

before(async () => {
  stack = await startStack('claude-code');
  sandbox = mkdtempSync(path.join(tmpdir(), 'heimdall-claude-code-'));
});
after(async () => {
  await stack?.stop();
  writeShown('claude-code', `@anthropic-ai/claude-code ${PINNED}`);
  if (sandbox && !process.env.HEIMDALL_KEEP_LOGS) rmSync(sandbox, { recursive: true, force: true });
});
beforeEach(async () => {
  await stack.clearMockRequests();
});

/**
 * Run `claude -p PROMPT --model MODEL ...args` non-interactively in a fresh HOME / config dir /
 * work dir, against `target` (the suite's stack unless a test brings its own).
 */
function runClaude(prompt, args = [], name = 'run', model = OPENAI_MODEL, target = stack) {
  const root = mkdtempSync(path.join(sandbox, `${name}-`));
  const home = path.join(root, 'home');
  const work = path.join(root, 'work');
  mkdirSync(home);
  mkdirSync(work);
  // A minimal, explicit environment: nothing from the developer's own Claude setup leaks in.
  const env = {
    PATH: process.env.PATH,
    HOME: home,
    CLAUDE_CONFIG_DIR: path.join(home, '.claude'),
    TMPDIR: root,
    LANG: 'C.UTF-8',
    TERM: 'dumb',
    SHELL: '/bin/bash',
    ANTHROPIC_BASE_URL: target.baseURL,
    ANTHROPIC_API_KEY: 'dummy',
    DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_ERROR_REPORTING: '1',
    DISABLE_BUG_COMMAND: '1',
    DISABLE_NON_ESSENTIAL_MODEL_CALLS: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    CLAUDE_CODE_DISABLE_TERMINAL_TITLE: '1',
    CI: '1',
  };
  return new Promise((resolve) => {
    // stdin is /dev/null (no TTY, nothing piped): print mode never waits for input.
    const child = spawn(CLAUDE_BIN, ['-p', prompt, '--model', model, ...args], {
      cwd: work,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, RUN_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const describe = () =>
        `exit=${code ?? signal} killed(timeout)=${killed}\nstdout:\n${stdout.slice(-4000)}\nstderr:\n${stderr.slice(-3000)}\n${target.logs()}`;
      resolve({ code: code ?? signal, killed, stdout, stderr, work, describe });
    });
  });
}

const lastUserMessage = (body) => [...(body?.messages ?? [])].reverse().find((m) => m.role === 'user');
const blocks = (content) => (typeof content === 'string' ? [{ type: 'text', text: content }] : content ?? []);

test('claude-code version', async () => {
  const r = await new Promise((resolve) =>
    execFile(CLAUDE_BIN, ['--version'], { timeout: 30_000 }, (error, stdout) => resolve({ error, stdout })),
  );
  assert.ifError(r.error);
  assert.match(r.stdout, new RegExp(`^${PINNED.replaceAll('.', '\\.')} `));
});

test('print mode: plain prompt completes through the gateway', async () => {
  const r = await runClaude('Reply with exactly: heimdall-plain-ok', ['--output-format', 'json'], 'plain');
  assert.equal(r.code, 0, r.describe());
  const result = JSON.parse(r.stdout.trim().split('\n').at(-1));
  assert.equal(result.type, 'result', r.describe());
  assert.equal(result.is_error, false, r.describe());
  // The mock echoes the last user message's text; our prompt is part of it.
  assert.ok(result.result.includes('heimdall-plain-ok'), r.describe());
  const calls = await stack.mockRequests();
  const main = calls.filter((c) => c.path.startsWith('/v1/chat/completions'));
  assert.ok(main.length >= 1, `no translated upstream call: ${JSON.stringify(calls.map((c) => c.path))}`);
});

/** `claude -p` runs `echo heimdall-ok` with its Bash tool through `provider`; the upstream calls
 * of that provider's dialect, once the answer quoting the tool's output came back. */
async function bashRoundTrip(provider) {
  const directive = '[[mock:tool Bash {"command":"echo heimdall-ok","description":"say ok"}]]';
  const args = ['--allowedTools', 'Bash', '--output-format', 'text'];
  const r = await runClaude(`Run the command. ${directive}`, args, `bash-${provider.id}`, provider.model);
  assert.equal(r.code, 0, r.describe());
  // The mock answers a turn that ends in tool results with `tool said: <results>`.
  assert.match(r.stdout, /tool said: heimdall-ok/, r.describe());
  const calls = (await stack.mockRequests()).filter((c) => c.path.includes(provider.upstream));
  assert.ok(calls.length >= 2, `expected >= 2 upstream calls to ${provider.upstream}, got ${calls.length}\n${r.describe()}`);
  return calls;
}

featureTest(providerById('openai'), 'claude_code', async () => {
  const calls = await bashRoundTrip(providerById('openai'));
  // First call offered the Bash tool; a later one carried its result back as an OpenAI tool message.
  assert.ok(calls[0].body.tools?.some((t) => t.function?.name === 'Bash'), 'Bash tool not offered upstream');
  const toolMsgs = calls.flatMap((c) => c.body.messages.filter((m) => m.role === 'tool'));
  assert.ok(
    toolMsgs.some((m) => JSON.stringify(m.content).includes('heimdall-ok')),
    `no tool message with the Bash output: ${JSON.stringify(toolMsgs)}`,
  );
});

// Every other provider; OpenAI's test above also checks the OpenAI wire shapes.
for (const provider of PROVIDERS.filter((p) => p.id !== 'openai')) {
  featureTest(provider, 'claude_code', async () => {
    const calls = await bashRoundTrip(provider);
    // The first call offered the Bash tool; a later one carried its output back.
    assert.ok(JSON.stringify(calls[0].body).includes('"Bash"'), 'Bash tool not offered upstream');
    assert.ok(
      calls.slice(1).some((c) => JSON.stringify(c.body).includes('heimdall-ok')),
      'no later upstream call carried the Bash output',
    );
  });
}

test('print mode: Read tool round trip', async () => {
  const marker = `heimdall-read-marker-${Date.now()}`;
  const file = path.join(sandbox, 'read-me.txt');
  writeFileSync(file, `${marker}\n`);
  const directive = `[[mock:tool Read {"file_path":${JSON.stringify(file)}}]]`;
  const r = await runClaude(`Read the file. ${directive}`, ['--allowedTools', 'Read', '--output-format', 'json'], 'read');
  assert.equal(r.code, 0, r.describe());
  const result = JSON.parse(r.stdout.trim().split('\n').at(-1));
  assert.equal(result.is_error, false, r.describe());
  assert.ok(result.result.startsWith('tool said: '), r.describe());
  assert.ok(result.result.includes(marker), r.describe());
  assert.ok(result.num_turns >= 2, r.describe());
});

test('upstream sees the directive in the last user message on turn one', async () => {
  // Guard for the mock contract: Claude Code wraps the prompt with reminder blocks, and may
  // put a system-role message after it; the directive must still be in the last *user* message.
  await runClaude('echo this back [[mock:delay 10]]', ['--output-format', 'json'], 'shape');
  const calls = await stack.mockRequests();
  const chat = calls.find((c) => c.path.startsWith('/v1/chat/completions'));
  assert.ok(chat, `no chat call: ${JSON.stringify(calls.map((c) => c.path))}`);
  const lastUser = lastUserMessage(chat.body);
  const text = blocks(lastUser?.content).map((b) => b.text ?? '').join('\n');
  assert.ok(text.includes('echo this back'), JSON.stringify(lastUser).slice(0, 2000));
});

/** The betas of a recorded request's `anthropic-beta` header (none if it has no such header). */
const betasOf = (call) =>
  (call.headers['anthropic-beta'] ?? '')
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean);

test('anthropic-beta goes upstream only when the config allowlists it', async () => {
  // Claude Code's betas reach a Claude upstream only through `client.header_filter_config`.
  const allowing = await startStack('claude-code-betas', {
    configPatch: { client: { header_filter_config: { allowlist: ['anthropic-beta'] } } },
  });
  try {
    /** Claude Code through `target` on a pass-through Claude model; the upstream calls it made. */
    const run = async (target, name) => {
      const r = await runClaude('Reply with exactly: heimdall-betas-ok', ['--output-format', 'text'], name, ANTHROPIC_MODEL, target);
      assert.equal(r.code, 0, r.describe());
      // The mock echoes the last user message, which holds the prompt.
      assert.match(r.stdout, /heimdall-betas-ok/, r.describe());
      const calls = await target.mockRequests();
      const messages = calls.filter((c) => c.path.split('?')[0] === '/v1/messages');
      assert.ok(messages.length >= 1, `no /v1/messages call: ${JSON.stringify(calls.map((c) => c.path))}`);
      return calls;
    };

    const allowed = await run(allowing, 'betas-allowed');
    for (const call of allowed.filter((c) => c.path.split('?')[0] === '/v1/messages')) {
      assert.ok(betasOf(call).includes('claude-code-20250219'), JSON.stringify(call.headers));
    }

    const filtered = await run(stack, 'betas-default');
    for (const call of filtered) assert.ok(!('anthropic-beta' in call.headers), `${call.path}: ${JSON.stringify(call.headers)}`);
  } finally {
    await allowing.stop();
  }
});
