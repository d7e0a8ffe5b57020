// Test harness shared by the node client suites: starts a heimdall-mock upstream and a
// heimdall gateway on port 0 in a temp dir, and tears both down afterwards.
//
// Binaries: HEIMDALL_BIN / HEIMDALL_MOCK_BIN, defaulting to
// ${CARGO_TARGET_DIR:-<repo>/target}/debug/heimdall{,-mock}.

import { spawn, spawnSync } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..', '..');
const TARGET_DIR = process.env.CARGO_TARGET_DIR || path.join(REPO_ROOT, 'target');
export const HEIMDALL_BIN = process.env.HEIMDALL_BIN || path.join(TARGET_DIR, 'debug', 'heimdall');
export const HEIMDALL_MOCK_BIN = process.env.HEIMDALL_MOCK_BIN || path.join(TARGET_DIR, 'debug', 'heimdall-mock');
// The testkit's strict Anthropic stream grammar checker, shared with the Rust tests.
export const HEIMDALL_SSE_CHECK_BIN =
  process.env.HEIMDALL_SSE_CHECK_BIN || path.join(TARGET_DIR, 'debug', 'heimdall-sse-check');

// Every provider the suites reach through the mock, and the gateway config for them (shared
// with the Python suites).
const PROVIDERS_JSON = JSON.parse(readFileSync(path.join(REPO_ROOT, 'tests', 'clients', 'providers.json'), 'utf8'));
export const PROVIDERS = PROVIDERS_JSON.providers;
export const providerById = (id) => PROVIDERS.find((p) => p.id === id);
const SERVICE_ACCOUNT_FILE = path.join(REPO_ROOT, 'crates', 'heimdall-testkit', 'fixtures', 'service-account.json');

export const ANTHROPIC_MODEL = 'claude-sonnet-4-5-20250929';
export const OPENAI_MODEL = 'openai/gpt-4o-mini';
export const MODELS = [ANTHROPIC_MODEL, OPENAI_MODEL];
export const MOCK_ANTHROPIC_KEY = PROVIDERS_JSON.config.providers.anthropic.keys[0].value;
export const MOCK_OPENAI_KEY = PROVIDERS_JSON.config.providers.openai.keys[0].value;
/** The key clients use; the gateway must never forward it upstream. */
export const CLIENT_KEY = 'sk-client-secret-must-not-leak-0000';

/** The `semantic_cache` plugin with the mock's OpenAI-compatible (trigram) embeddings. */
export const CACHE_CONFIG = {
  plugins: [
    {
      enabled: true,
      name: 'semantic_cache',
      config: { provider: 'openai', embedding_model: 'trigram-256', dimension: 256, threshold: 0.8, ttl: '5m' },
    },
  ],
};

const LISTEN_RE = /listening on (http:\/\/[0-9.:[\]a-z]+)/;
const START_TIMEOUT_MS = 30_000;

function startProcess(name, cmd, args, workdir) {
  try {
    accessSync(cmd, constants.X_OK);
  } catch {
    throw new Error(`${name} binary not found or not executable: ${cmd}`);
  }
  const logFile = path.join(workdir, `${name}.log`);
  const logFd = openSync(logFile, 'a');
  const child = spawn(cmd, args, {
    cwd: workdir,
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const proc = { name, child, url: '', logFile, log: () => output };
  const onData = (chunk) => {
    // eslint-disable-next-line no-control-regex
    const text = chunk.toString().replace(/\x1b\[[0-9;]*m/g, '');
    output += text;
    if (output.length > 200_000) output = output.slice(-100_000);
    writeSync(logFd, text);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  child.on('exit', () => closeSync(logFd));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not print its listening line in ${START_TIMEOUT_MS} ms:\n${output}`));
    }, START_TIMEOUT_MS);
    const check = () => {
      const m = LISTEN_RE.exec(output);
      if (m) {
        clearTimeout(timer);
        child.stdout.off('data', check);
        child.stderr.off('data', check);
        proc.url = m[1].replace(/\/$/, '');
        resolve(proc);
      }
    };
    child.stdout.on('data', check);
    child.stderr.on('data', check);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before listening:\n${output}`));
    });
  });
}

async function stopProcess(proc) {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.child.once('exit', resolve));
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** `base` with `patch` laid over it: objects merge key by key, anything else is replaced. */
function merged(base, patch) {
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(base) || !isObject(patch)) return patch;
  const out = { ...base };
  for (const [key, value] of Object.entries(patch)) out[key] = key in base ? merged(base[key], value) : value;
  return out;
}

/**
 * providers.json's config, with `configPatch` merged in, the mock's URL and the test service
 * account filled in.
 */
function gatewayConfig(mockUrl, configPatch) {
  const account = JSON.parse(readFileSync(SERVICE_ACCOUNT_FILE, 'utf8'));
  account.token_uri = `${mockUrl}/token`;
  return JSON.stringify(merged(PROVIDERS_JSON.config, configPatch), null, 2)
    .replaceAll('"{{service_account}}"', JSON.stringify(JSON.stringify(account)))
    .replaceAll('{{mock}}', mockUrl);
}

function headerObject(headers) {
  if (!Array.isArray(headers)) {
    return Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  }
  const out = {};
  for (const [name, value] of headers) {
    const key = name.toLowerCase();
    out[key] = key in out ? `${out[key]}, ${value}` : value;
  }
  return out;
}

/**
 * Start mock + gateway; `configPatch` is merged into providers.json's config (a gateway setting
 * under test, e.g. `{ client: { allow_direct_keys: true } }`). Returns
 * { gatewayUrl, baseURL (…/anthropic), mockUrl, workdir, mockRequests(), clearMockRequests(), logs(), stop() }.
 */
export async function startStack(label = 'node', { configPatch = {} } = {}) {
  const workdir = mkdtempSync(path.join(tmpdir(), `heimdall-${label}-`));
  let mock;
  let gateway;
  try {
    mock = await startProcess('heimdall-mock', HEIMDALL_MOCK_BIN, ['--port', '0'], workdir);
    writeFileSync(path.join(workdir, 'config.json'), gatewayConfig(mock.url, configPatch));
    gateway = await startProcess(
      'heimdall',
      HEIMDALL_BIN,
      ['--app-dir', workdir, '--port', '0', '--host', '127.0.0.1'],
      workdir,
    );
  } catch (err) {
    await stopProcess(gateway);
    await stopProcess(mock);
    throw err;
  }
  const stack = {
    workdir,
    mockUrl: mock.url,
    gatewayUrl: gateway.url,
    baseURL: `${gateway.url}/anthropic`,
    async mockRequests() {
      const res = await fetch(`${mock.url}/_mock/requests`);
      if (!res.ok) throw new Error(`GET /_mock/requests -> ${res.status}`);
      // Headers are recorded as [name, value] pairs; expose them as an object (lowercase names).
      return (await res.json()).map((call) => ({ ...call, headers: headerObject(call.headers) }));
    },
    async clearMockRequests() {
      const res = await fetch(`${mock.url}/_mock/requests`, { method: 'DELETE' });
      if (!res.ok) throw new Error(`DELETE /_mock/requests -> ${res.status}`);
    },
    logs() {
      return `--- heimdall ---\n${gateway.log().slice(-3000)}\n--- heimdall-mock ---\n${mock.log().slice(-1500)}`;
    },
    async stop() {
      await stopProcess(gateway);
      await stopProcess(mock);
      if (!process.env.HEIMDALL_KEEP_LOGS) rmSync(workdir, { recursive: true, force: true });
    },
  };
  return stack;
}

/** A valid 1x1 red PNG, base64 (same bytes as tiny_png() in the Python suite). */
export const TINY_PNG_BASE64 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC';

/** Race a promise against a timeout so a hanging stream fails the test instead of the run. */
export function withTimeout(promise, ms, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms (hang)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Checks raw Anthropic SSE text with `heimdall-sse-check`; resolves to its verdict. */
export function checkSseGrammar(text, ending) {
  const checked = spawnSync(HEIMDALL_SSE_CHECK_BIN, [ending], { input: text, encoding: 'utf8', timeout: 30_000 });
  return { ok: checked.status === 0, report: `${checked.stdout ?? ''}${checked.stderr ?? ''}${checked.error ?? ''}` };
}

// ---------------------------------------------------------------------------- provider matrix
//
// Per-provider feature tests are declared with `featureTest`; each one run is recorded as
// (provider, feature, outcome: what it showed, or `fail`) and `writeShown` (called in the suite's `after`) saves them to
// $HEIMDALL_MATRIX_DIR/$HEIMDALL_CLIENT_ID.json for scripts/provider-matrix, which renders the
// README's provider matrix from what the suites showed.

const shown = [];

/**
 * A test of one feature for one provider. `fn` resolves to what it showed: nothing for a pass,
 * or the documented alternative it asserted instead (`estimate`, `none`, `configured`).
 */
export function featureTest(provider, feature, fn) {
  test(`${provider.id}: ${feature}`, async () => {
    let outcome = 'fail';
    try {
      outcome = (await fn()) ?? 'pass';
    } finally {
      shown.push({ provider: provider.id, feature, outcome });
    }
  });
}

/** Saves the recorded passes; a no-op unless HEIMDALL_MATRIX_DIR is set. */
export function writeShown(clientId, label) {
  const dir = process.env.HEIMDALL_MATRIX_DIR;
  if (!dir) return;
  const client = process.env.HEIMDALL_CLIENT_ID || clientId;
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `${client}.json`), JSON.stringify({ client, label, results: shown }, null, 1));
}
