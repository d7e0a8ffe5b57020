// The web UI in real headless Chromium (Debian's `chromium`, driven by playwright-core),
// against the real gateway in front of heimdall-mock, with requests sent by the official
// Python SDK. What a user does in the pages must show in what the upstream receives, and what
// the SDK does must show in the pages.
//
// Screenshots of every page go to ${CARGO_TARGET_DIR:-target}/ui-screenshots/ (git-ignored).
// Env: HEIMDALL_CHROMIUM (default /usr/bin/chromium), HEIMDALL_UI_PYTHON (a python with the
// `anthropic` package; default <repo>/.clients/py-anthropic-2/bin/python).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';

import { REPO_ROOT, startStack } from '../node/harness.mjs';

const CHROMIUM = process.env.HEIMDALL_CHROMIUM || '/usr/bin/chromium';
const PYTHON = process.env.HEIMDALL_UI_PYTHON || path.join(REPO_ROOT, '.clients', 'py-anthropic-2', 'bin', 'python');
const SHOTS = path.join(process.env.CARGO_TARGET_DIR || path.join(REPO_ROOT, 'target'), 'ui-screenshots');
const CLAUDE = 'claude-sonnet-4-5-20250929';
const GPT = 'openai/gpt-4o-mini';
/** The provider key typed into the UI: it must never come back out. */
const PROVIDER_SECRET = 'sk-ui-together-secret-7f3a9c2e5b1d4068';
const ADMIN_PASSWORD = 'ui-admin-password-31415';

mkdirSync(SHOTS, { recursive: true });

/** A request with the Python SDK; resolves to its verdict. */
function sdk(baseURL, job) {
  const run = spawnSync(PYTHON, [path.join(import.meta.dirname, 'sdk.py')], {
    input: JSON.stringify({ base_url: baseURL, ...job }),
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(run.status, 0, `python SDK run failed: ${run.stderr}${run.error ?? ''}`);
  return JSON.parse(run.stdout);
}

/** Polls `fn` until it returns a truthy value. */
async function until(fn, what, ms = 15_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A browser page on the gateway that records every request the page makes, every API
 * answer's body, and console errors other than the 401s the login flow expects.
 */
async function openPage(browser, gatewayUrl, { width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const seen = { requests: [], apiBodies: [], errors: [] };
  page.on('request', (r) => seen.requests.push(r.url()));
  page.on('response', async (r) => {
    if (!r.url().startsWith(`${gatewayUrl}/api/`)) return;
    try {
      seen.apiBodies.push({ url: r.url(), body: await r.text() });
    } catch {
      /* a redirect or a body already gone */
    }
  });
  page.on('console', (m) => {
    // A refused API call is logged by the browser itself; the page shows it in words.
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of \d+/.test(m.text())) {
      seen.errors.push(m.text());
    }
  });
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  // `confirm()` before deleting: the user says yes.
  page.on('dialog', (d) => d.accept());
  return { page, context, seen };
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Loads the UI afresh at `hash` (through a blank page: the same address again would only
 * be a same-document navigation, which reloads nothing). */
async function go(page, gatewayUrl, hash) {
  await page.goto('about:blank');
  await page.goto(`${gatewayUrl}/ui/${hash}`);
  await page.locator('main h1').first().waitFor();
}

function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install -y chromium) or set HEIMDALL_CHROMIUM`);
  }
  const args = ['--disable-gpu', '--disable-dev-shm-usage'];
  // Chromium refuses to sandbox as root (CI runs as root).
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

describe('web UI without admin auth', () => {
  let stack;
  let browser;
  let ui;

  before(async () => {
    stack = await startStack('ui', {
      configPatch: { pricing: { 'gpt-4o-mini': { input: 1.0, output: 2.0 } } },
    });
    browser = await launch();
    ui = await openPage(browser, stack.gatewayUrl);
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  test('the allowlist set in Settings → Client Settings lets anthropic-beta reach the upstream', async () => {
    const { page } = ui;
    const beta = 'ui-test-beta-2026-12-01';
    // Before: not on the allowlist, so not forwarded.
    await stack.clearMockRequests();
    let r = sdk(stack.baseURL, { model: CLAUDE, text: 'before allowlist', headers: { 'anthropic-beta': beta } });
    assert.ok(r.ok, JSON.stringify(r));
    let calls = await stack.mockRequests();
    assert.ok(!String(calls.at(-1).headers['anthropic-beta'] ?? '').includes(beta), 'forwarded before being allowed');

    await go(page, stack.gatewayUrl, '#/settings');
    const allow = page.getByLabel('Allowlist (one header name per line)');
    await allow.fill('anthropic-beta');
    await shot(page, 'settings');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.getByText('Saved. The gateway uses these settings from now on.').waitFor();
    assert.equal(await allow.inputValue(), 'anthropic-beta');

    await stack.clearMockRequests();
    r = sdk(stack.baseURL, { model: CLAUDE, text: 'after allowlist', headers: { 'anthropic-beta': beta } });
    assert.ok(r.ok, JSON.stringify(r));
    calls = await stack.mockRequests();
    assert.ok(calls.length >= 1);
    assert.ok(String(calls.at(-1).headers['anthropic-beta'] ?? '').includes(beta), JSON.stringify(calls.at(-1).headers));
  });

  test('a virtual key created with a budget in the UI works from the SDK, and its usage shows', async () => {
    const { page } = ui;
    await go(page, stack.gatewayUrl, '#/keys');
    await page.getByLabel('Name', { exact: true }).fill('ui-team');
    await page.getByLabel('Description').fill('made in the browser test');
    await page.getByLabel('Budget', { exact: true }).fill('5');
    await page.getByLabel('Budget period').selectOption('1M');
    await page.getByLabel('Requests', { exact: true }).fill('100');
    await page.getByLabel('Request period').selectOption('1h');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.getByText('Created “ui-team”').waitFor();
    const card = page.locator('section.vkey', { has: page.getByRole('heading', { name: 'ui-team' }) });
    const value = (await card.locator('code.vk-value').textContent()).trim();
    assert.match(value, /^sk-bf-/);

    for (const text of ['first with the key', 'second with the key']) {
      const r = sdk(stack.baseURL, { model: GPT, text, default_headers: { 'x-bf-vk': value } });
      assert.ok(r.ok, JSON.stringify(r));
    }
    // An unknown key is refused: the header is really checked.
    const refused = sdk(stack.baseURL, { model: GPT, text: 'no such key', default_headers: { 'x-bf-vk': 'sk-bf-nobody' } });
    assert.equal(refused.ok, false);

    await until(async () => {
      await go(page, stack.gatewayUrl, '#/keys');
      const text = await page.locator('section.vkey', { has: page.getByRole('heading', { name: 'ui-team' }) }).textContent();
      return /2 used of 100/.test(text) && /\$\d/.test(text);
    }, 'the key usage to show 2 requests');
    const usage = await page.locator('section.vkey').first().textContent();
    assert.match(usage, /Budget \(virtual_key|Budget \(/);
    const meters = await card.locator('meter').count();
    assert.ok(meters >= 2, `budget and request meters, got ${meters}`);
    await shot(page, 'virtual-keys');

    // Switched off in the UI, the key is refused; switched on, it works again.
    await card.getByRole('button', { name: 'Switch off' }).click();
    await card.getByRole('button', { name: 'Switch on' }).waitFor();
    const off = sdk(stack.baseURL, { model: GPT, text: 'while off', default_headers: { 'x-bf-vk': value } });
    assert.equal(off.ok, false, JSON.stringify(off));
    assert.equal(off.status, 403, JSON.stringify(off));
    await card.getByRole('button', { name: 'Switch on' }).click();
    await card.getByRole('button', { name: 'Switch off' }).waitFor();
    assert.ok(sdk(stack.baseURL, { model: GPT, text: 'on again', default_headers: { 'x-bf-vk': value } }).ok);
  });

  test('a provider key added in the UI serves requests and is never shown again', async () => {
    const { page, seen } = ui;
    await go(page, stack.gatewayUrl, '#/providers');
    await page.getByLabel('Provider', { exact: true }).fill('together');
    await page.getByLabel('Key name').last().fill('ui-key');
    await page.getByLabel('Key value').last().fill(PROVIDER_SECRET);
    await page.getByLabel('Base URL').fill(stack.mockUrl);
    await page.getByRole('button', { name: 'Add provider' }).click();
    await page.getByText('Added the provider together.').waitFor();
    const card = page.locator('section.provider', { has: page.getByRole('heading', { name: 'together' }) });
    await card.waitFor();
    assert.match(await card.textContent(), /sk-…4068|\*{8}/);

    await stack.clearMockRequests();
    let r = sdk(stack.baseURL, { model: 'together/meta-llama-3-8b', text: 'through the new key' });
    assert.ok(r.ok, JSON.stringify(r));
    let calls = await stack.mockRequests();
    assert.equal(calls.at(-1).headers.authorization, `Bearer ${PROVIDER_SECRET}`);

    // Edit the key without retyping it: the stored value is kept.
    await card.getByRole('button', { name: 'Edit' }).click();
    await card.locator('form.key-form', { hasText: 'Edit key' }).getByLabel('Weight').fill('3');
    await page.getByRole('button', { name: 'Save key' }).click();
    await page.getByText('Saved key ui-key of together.').first().waitFor();
    await stack.clearMockRequests();
    r = sdk(stack.baseURL, { model: 'together/meta-llama-3-8b', text: 'after the edit' });
    assert.ok(r.ok, JSON.stringify(r));
    calls = await stack.mockRequests();
    assert.equal(calls.at(-1).headers.authorization, `Bearer ${PROVIDER_SECRET}`);
    await shot(page, 'providers');

    // Never in the page, never in an answer of the API (what the page got, and the rest).
    assert.ok(!(await page.content()).includes(PROVIDER_SECRET), 'the key value is in the page');
    for (const { url, body } of seen.apiBodies) assert.ok(!body.includes(PROVIDER_SECRET), `in ${url}`);
    for (const p of ['/api/providers', '/api/providers/together', '/api/config', '/api/logs?limit=1000',
      '/api/governance/virtual-keys', '/api/logs/timeseries', '/api/openapi.json']) {
      const text = await (await fetch(`${stack.gatewayUrl}${p}`)).text();
      assert.ok(!text.includes(PROVIDER_SECRET), `the key value is in ${p}`);
    }
  });

  test('a failed request shows in Logs with its error, and in its detail', async () => {
    const { page } = ui;
    const r = sdk(stack.baseURL, { model: GPT, text: '[[mock:error 500]] please fail' });
    assert.equal(r.ok, false);
    await until(async () => {
      await go(page, stack.gatewayUrl, '#/logs?status=error');
      return (await page.locator('table.logs tbody tr.error').count()) > 0;
    }, 'the failed request in the logs');
    const row = page.locator('table.logs tbody tr.error').first();
    assert.ok((await row.locator('td.error-cell').textContent()).trim().length > 0, 'the row shows the error');
    await shot(page, 'logs');
    await row.getByRole('link').click();
    await page.getByRole('heading', { name: /^Request / }).waitFor();
    await page.locator('.notice.error').waitFor();
    const detail = await page.locator('main').textContent();
    assert.match(detail, /Attempt trail/);
    // The failed upstream attempt, with who answered it and how.
    const attempt = page.locator('table.attempts tbody tr');
    assert.equal(await attempt.count(), 1, 'one failed attempt');
    const cells = await attempt.first().locator('td').allTextContents();
    assert.deepEqual(cells.slice(0, 5), ['1', 'openai', 'openai/gpt-4o-mini', 'mock', '500']);
    assert.match(cells[5], /mock error 500/);
    assert.match(detail, /Asked for openai\/gpt-4o-mini/);
    assert.match(detail, /please fail/, 'the input is shown');
    await shot(page, 'log-detail');

    // The search finds a request by its content, and the live tail shows a new one without
    // anything clicked.
    await go(page, stack.gatewayUrl, '#/logs');
    await page.getByLabel('Search content').fill('tail me');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('No request matches these filters.').waitFor();
    await page.getByLabel('Live tail (refresh every 2 s)').check();
    assert.ok(sdk(stack.baseURL, { model: GPT, text: 'tail me please' }).ok);
    await until(async () => (await page.locator('table.logs tbody tr').count()) === 1, 'the tailed request');
  });

  test('the dashboard charts render with data', async () => {
    const { page } = ui;
    await go(page, stack.gatewayUrl, '#/dashboard');
    await until(async () => (await page.locator('svg.chart').count()) >= 7, 'the charts');
    // The tests' requests came within the last minute or two: spread over short buckets.
    await page.getByLabel('Time range').selectOption({ label: 'Last 5 minutes' });
    await page.locator('.dashboard[aria-busy="false"]').waitFor();
    await until(async () => (await page.locator('svg.chart').count()) >= 7, 'the charts again');
    const tiles = await page.locator('.tiles').textContent();
    assert.match(tiles, /Requests\d/);
    assert.doesNotMatch(tiles, /Requests0/);
    // Drawn from data: columns, lines with segments, a bar per model.
    assert.ok((await page.locator('svg.chart rect.bar.c1').count()) >= 1, 'request columns');
    assert.ok((await page.locator('svg.chart rect.bar.c-err').count()) >= 1, 'error columns');
    const lines = await page.locator('svg.chart path.line').evaluateAll((ps) => ps.map((p) => p.getAttribute('d')));
    assert.ok(lines.some((d) => /M[\d.]+ [\d.]+/.test(d)), `latency lines: ${lines}`);
    const models = await page.locator('section.panel', { has: page.getByRole('heading', { name: 'Top models' }) }).textContent();
    assert.match(models, /gpt-4o-mini/);
    const keys = await page.locator('section.panel', { has: page.getByRole('heading', { name: 'Top virtual keys' }) }).textContent();
    assert.match(keys, /ui-team/, 'the virtual key by its name');
    await shot(page, 'dashboard');
  });

  test('every page works in a 400 px window, and the browser only ever talks to the gateway', async () => {
    const narrow = await openPage(browser, stack.gatewayUrl, { width: 400, height: 800 });
    for (const name of ['dashboard', 'logs', 'providers', 'keys', 'settings', 'cache']) {
      await go(narrow.page, stack.gatewayUrl, `#/${name}`);
      await narrow.page.waitForLoadState('networkidle');
      const overflow = await narrow.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${name} scrolls sideways by ${overflow}px at 400px`);
      await shot(narrow.page, `narrow-${name}`);
    }
    await go(ui.page, stack.gatewayUrl, '#/cache');
    await ui.page.getByRole('button', { name: 'Clear the whole cache' }).click();
    await ui.page.getByText(/Whole cache: removed \d+ entr/).first().waitFor();
    await shot(ui.page, 'cache');
    // An API error in plain words.
    await ui.page.getByLabel('Entry id (x-bf-cache-id of a hit)').fill('ce_missing');
    await ui.page.getByRole('button', { name: 'Clear this entry' }).click();
    await ui.page.getByText('Not found: no cache entry with id `ce_missing`').first().waitFor();
    for (const { seen } of [ui, narrow]) {
      const elsewhere = seen.requests.filter((u) => !u.startsWith(`${stack.gatewayUrl}/`) && !u.startsWith('data:'));
      assert.deepEqual(elsewhere, [], 'requests to somewhere other than the gateway');
      assert.deepEqual(seen.errors, [], 'console errors (a CSP violation shows here)');
    }
    await narrow.context.close();
  });
});

describe('web UI with admin auth', () => {
  let stack;
  let browser;

  before(async () => {
    stack = await startStack('ui-auth', {
      configPatch: { client: { admin_auth: { type: 'basic', username: 'admin', password: ADMIN_PASSWORD } } },
    });
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  test('every page asks for a login first, and works after it', async () => {
    const { page, context, seen } = await openPage(browser, stack.gatewayUrl);
    for (const name of ['dashboard', 'logs', 'providers', 'keys', 'settings', 'cache']) {
      // A fresh load each time, as a bookmark or a typed address would be.
      await page.goto('about:blank');
      await page.goto(`${stack.gatewayUrl}/ui/#/${name}`);
      await page.getByRole('heading', { name: 'Log in to Heimdall' }).waitFor();
      assert.match(page.url(), /#\/login\?next=/);
      assert.equal(await page.locator('.panel').count(), 0, `${name} showed content before login`);
    }
    await shot(page, 'login');
    // The API itself refuses without the cookie.
    assert.equal((await fetch(`${stack.gatewayUrl}/api/logs`)).status, 401);

    await page.getByLabel('User name').fill('admin');
    await page.getByLabel('Password').fill('wrong-password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByText('The user name or password is not right. Try again.').waitFor();
    await shot(page, 'login-error');

    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Cache', exact: true }).waitFor();
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'heimdall_session');
    assert.ok(session, JSON.stringify(cookies));
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.ok(!JSON.stringify(seen.apiBodies).includes(ADMIN_PASSWORD), 'the password came back');

    await go(page, stack.gatewayUrl, '#/dashboard');
    await until(async () => (await page.locator('svg.chart').count()) >= 5, 'the dashboard after login');

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('heading', { name: 'Log in to Heimdall' }).waitFor();
    await page.goto(`${stack.gatewayUrl}/ui/#/logs`);
    await page.getByRole('heading', { name: 'Log in to Heimdall' }).waitFor();
    assert.deepEqual(seen.errors, []);
    await context.close();
  });
});
