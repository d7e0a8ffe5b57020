// The dashboard: the last hour, day or week of request logs as charts (volume, error rate,
// latency percentiles, tokens, cost) and the busiest models and virtual keys.

import { h, field, fmt, notice } from '../dom.js';
import { get } from '../api.js';
import { lineChart, columnChart, barList } from '../charts.js';

export const title = 'Dashboard';

const RANGES = [
  { value: '300000', label: 'Last 5 minutes' },
  { value: '3600000', label: 'Last hour' },
  { value: '21600000', label: 'Last 6 hours' },
  { value: '86400000', label: 'Last 24 hours' },
  { value: '604800000', label: 'Last 7 days' },
];
const BUCKETS = 48;
const REFRESH_MS = 15000;

function tile(label, value, cls = '') {
  return h('div', { class: `tile ${cls}` }, h('p', { class: 'tile-label' }, label), h('p', { class: 'tile-value' }, value));
}

function section(heading, ...body) {
  return h('section', { class: 'panel' }, h('h2', {}, heading), ...body);
}

export async function render(main) {
  const range = h('select', { name: 'range' }, RANGES.map((r) => h('option', { value: r.value, selected: r.value === '86400000' }, r.label)));
  const body = h('div', { class: 'dashboard', 'aria-live': 'polite', 'aria-busy': 'true' });
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Dashboard'), h('form', { class: 'inline', onsubmit: (e) => e.preventDefault() }, field('Time range', range))),
    body,
  );
  let timer = null;
  const load = async () => {
    const span = Number(range.value);
    const to = Date.now();
    const from = to - span;
    body.setAttribute('aria-busy', 'true');
    try {
      const data = await get(`/api/logs/timeseries?from=${from}&to=${to}&buckets=${BUCKETS}&top=8`);
      draw(body, data, span);
    } catch (e) {
      if (e.status !== 401) body.replaceChildren(notice('error', e.message));
    } finally {
      body.setAttribute('aria-busy', 'false');
    }
  };
  range.addEventListener('change', load);
  await load();
  timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}

function draw(body, data, span) {
  const b = data.buckets;
  const xs = b.map((x) => x.start_ms);
  const xFormat = span > 86400000 ? fmt.day : span <= 900000 ? fmt.clockSeconds : fmt.clock;
  const total = b.reduce((n, x) => n + x.requests, 0);
  const errors = b.reduce((n, x) => n + x.errors, 0);
  const tokens = b.reduce((n, x) => n + x.input_tokens + x.output_tokens, 0);
  const cost = b.reduce((n, x) => n + x.cost, 0);
  const p95s = b.map((x) => x.latency_p95_ms).filter((v) => v !== null);
  const worstP95 = p95s.length ? Math.max(...p95s) : null;
  const busiest = b.reduce((best, x) => (x.requests > best.requests ? x : best), b[0] || { requests: 0, start_ms: 0 });
  const errorRate = b.map((x) => (x.requests ? (100 * x.errors) / x.requests : null));
  const names = data.virtual_key_names || {};

  body.replaceChildren(...[
    h('div', { class: 'tiles' },
      tile('Requests', fmt.int(total)),
      tile('Error rate', total ? fmt.pct((100 * errors) / total) : '–', errors ? 'warn' : ''),
      tile('Worst p95 latency', fmt.ms(worstP95)),
      tile('Tokens', fmt.int(tokens)),
      tile('Cost', fmt.usd(cost)),
    ),
    total === 0 ? notice('info', 'No requests in this time range yet. Send one through /anthropic and it shows here.') : null,
    h('div', { class: 'grid2' },
      section('Request volume', columnChart({
        title: 'Requests per interval',
        summary: `${fmt.int(total)} requests, ${fmt.int(errors)} failed; busiest interval ${xFormat(busiest.start_ms)} with ${fmt.int(busiest.requests)}.`,
        xs, xFormat, yFormat: (v) => fmt.int(Math.round(v)),
        series: [
          { label: 'Succeeded or cancelled', values: b.map((x) => x.requests - x.errors), cls: 'c1' },
          { label: 'Failed', values: b.map((x) => x.errors), cls: 'c-err' },
        ],
      })),
      section('Error rate', lineChart({
        title: 'Share of requests that failed',
        summary: total ? `${fmt.pct((100 * errors) / total)} of all requests failed.` : 'No requests.',
        xs, xFormat, yFormat: (v) => `${Math.round(v)}%`,
        series: [{ label: 'Error rate', values: errorRate, cls: 'c-err' }],
      })),
      section('Latency', lineChart({
        title: 'Latency percentiles',
        summary: `Highest p95 ${fmt.ms(worstP95)}.`,
        xs, xFormat, yFormat: fmt.ms,
        series: [
          { label: 'p50', values: b.map((x) => x.latency_p50_ms), cls: 'c1' },
          { label: 'p95', values: b.map((x) => x.latency_p95_ms), cls: 'c2' },
          // Dashed: where it equals p95 (few requests), both stay visible.
          { label: 'p99', values: b.map((x) => x.latency_p99_ms), cls: 'c3', dashed: true },
        ],
      })),
      section('Tokens', lineChart({
        title: 'Tokens per interval',
        integer: true,
        summary: `${fmt.int(tokens)} tokens in all.`,
        xs, xFormat, yFormat: (v) => fmt.int(Math.round(v)),
        series: [
          { label: 'Input', values: b.map((x) => x.input_tokens), cls: 'c1' },
          { label: 'Output', values: b.map((x) => x.output_tokens), cls: 'c2' },
        ],
      })),
      section('Cost', lineChart({
        title: 'Cost per interval (US dollars)',
        summary: `${fmt.usd(cost)} in all.`,
        xs, xFormat, yFormat: fmt.usdAxis,
        series: [{ label: 'Cost', values: b.map((x) => x.cost), cls: 'c4' }],
      })),
      section('Top models', barList({
        title: 'Requests by model',
        entries: data.top_models.map((m) => ({ label: m.name, value: m.requests, note: `${fmt.int(m.requests)} req · ${fmt.usd(m.cost)}` })),
        empty: 'No model was asked for in this range.',
      })),
      section('Top virtual keys', barList({
        title: 'Requests by virtual key',
        entries: data.top_virtual_keys.map((k) => ({ label: names[k.name] || k.name, value: k.requests, cls: 'c2', note: `${fmt.int(k.requests)} req · ${fmt.usd(k.cost)}` })),
        empty: 'No request used a virtual key in this range.',
      })),
    ),
  ].filter(Boolean));
}
