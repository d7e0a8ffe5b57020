// Request logs: filters and search over `GET /api/logs`, a live tail that polls for new
// requests, and one request in full (`#/logs/<id>`): input, output, timings, cost and the
// path it took (each upstream attempt that failed, then model asked, fallbacks, provider, key,
// attempts).

import { h, field, fmt, notice } from '../dom.js';
import { get } from '../api.js';

export const title = 'Logs';

const PAGE = 50;
const TAIL_MS = 2000;

export async function render(main, args, query) {
  if (args[0]) return detail(main, args[0]);
  return list(main, query);
}

function statusBadge(log) {
  return h('span', { class: `badge ${log.status}` }, log.status === 'success' ? `${log.status_code} ok` : `${log.status_code} ${log.status}`);
}

async function list(main, query) {
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter logs' });
  const search = h('input', { type: 'search', name: 'search', value: query.get('search') || '', placeholder: 'text in a request or answer' });
  const status = h('select', { name: 'status' },
    h('option', { value: '' }, 'Any'),
    ['success', 'error', 'cancelled'].map((v) => h('option', { value: v, selected: query.get('status') === v }, v)));
  const model = h('input', { type: 'text', name: 'models', value: query.get('models') || '', placeholder: 'openai/gpt-4o-mini' });
  const provider = h('input', { type: 'text', name: 'providers', value: query.get('providers') || '', placeholder: 'openai' });
  const vk = h('input', { type: 'text', name: 'virtual_key', value: query.get('virtual_key') || '', placeholder: 'vk_… or sk-bf-…' });
  const tail = h('input', { type: 'checkbox', name: 'tail' });
  form.append(
    field('Search content', search),
    field('Status', status),
    field('Model', model),
    field('Provider', provider),
    field('Virtual key', vk),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Apply filters')),
    field('Live tail (refresh every 2 s)', tail),
  );
  const stats = h('p', { class: 'stats', 'aria-live': 'polite' });
  const table = h('div', { class: 'table-wrap' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of logs' });
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Logs')), form, stats, table, pager);

  let offset = Number(query.get('offset') || 0);
  const params = () => {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v && k !== 'tail') p.set(k, String(v).trim());
    return p;
  };
  const load = async () => {
    const p = params();
    p.set('limit', PAGE);
    p.set('offset', offset);
    try {
      const page = await get(`/api/logs?${p}`);
      show(page);
    } catch (e) {
      if (e.status !== 401) table.replaceChildren(notice('error', e.message));
    }
  };
  const show = (page) => {
    const st = page.stats;
    stats.textContent = `${fmt.int(st.total_requests)} requests · ${fmt.pct(st.success_rate)} succeeded · average ${fmt.ms(st.average_latency_ms)} · ${fmt.int(st.total_tokens)} tokens · ${fmt.usd(st.total_cost)}`;
    if (!page.logs.length) {
      table.replaceChildren(h('p', { class: 'empty' }, 'No request matches these filters.'));
    } else {
      table.replaceChildren(h('table', { class: 'logs' },
        h('caption', { class: 'sr-only' }, 'Requests, newest first'),
        h('thead', {}, h('tr', {}, ['Time', 'Status', 'Model', 'Provider', 'Latency', 'Tokens', 'Cost', 'Error'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, page.logs.map((log) => h('tr', { class: log.status },
          h('td', {}, h('a', { href: `#/logs/${encodeURIComponent(log.id)}` }, fmt.time(Date.parse(log.timestamp)))),
          h('td', {}, statusBadge(log)),
          h('td', {}, log.served_model || log.model || '–'),
          h('td', {}, log.provider || '–'),
          h('td', { class: 'num' }, fmt.ms(log.latency_ms)),
          h('td', { class: 'num' }, fmt.int(log.input_tokens + log.output_tokens)),
          h('td', { class: 'num' }, fmt.usd(log.cost)),
          h('td', { class: 'error-cell' }, log.error_message || ''),
        ))),
      ));
    }
    const { limit, total_count: count } = page.pagination;
    const at = (o) => () => { offset = o; load(); };
    pager.replaceChildren(
      h('button', { type: 'button', disabled: offset === 0, onclick: at(Math.max(0, offset - limit)) }, 'Newer'),
      h('span', {}, count ? `${offset + 1}–${Math.min(offset + limit, count)} of ${fmt.int(count)}` : ''),
      h('button', { type: 'button', disabled: offset + limit >= count, onclick: at(offset + limit) }, 'Older'),
    );
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    offset = 0;
    const p = params();
    history.replaceState(null, '', `#/logs${p.toString() ? `?${p}` : ''}`);
    load();
  });
  let timer = null;
  tail.addEventListener('change', () => {
    clearInterval(timer);
    timer = null;
    if (tail.checked) {
      offset = 0;
      timer = setInterval(load, TAIL_MS);
      load();
    }
  });
  await load();
  return () => clearInterval(timer);
}

function json(value, missing) {
  if (value === null || value === undefined) return h('p', { class: 'empty' }, missing);
  return h('pre', { class: 'code', tabindex: '0' }, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
}

function row(label, value) {
  return [h('dt', {}, label), h('dd', {}, value ?? '–')];
}

// The upstream attempts that failed (retried, moved to another key, fallen back from), one
// row each in order; what finally happened follows them. Nothing when the first attempt served.
function failedAttempts(log) {
  const failed = log.attempt_trail || [];
  if (!failed.length) return null;
  return h('div', { class: 'table-wrap' }, h('table', { class: 'attempts' },
    h('caption', { class: 'sr-only' }, 'Upstream attempts that failed, in order'),
    h('thead', {}, h('tr', {}, ['#', 'Provider', 'Model', 'Key', 'Status', 'Error', 'Elapsed'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, failed.map((a, i) => h('tr', { class: 'error' },
      h('td', { class: 'num' }, i + 1),
      h('td', {}, a.provider),
      h('td', {}, a.model),
      h('td', {}, a.key_name),
      // No status: the upstream never answered (a timeout, a connection failure).
      h('td', { class: 'num' }, a.status ?? '–'),
      h('td', { class: 'error-cell' }, `${a.error_type}: ${a.error_message}`),
      h('td', { class: 'num' }, fmt.ms(a.elapsed_ms)),
    ))),
  ));
}

async function detail(main, id) {
  main.append(h('p', {}, h('a', { href: '#/logs' }, '← All logs')));
  let log;
  try {
    log = await get(`/api/logs/${encodeURIComponent(id)}`);
  } catch (e) {
    main.append(h('h1', {}, 'Request'), notice('error', e.message));
    return;
  }
  const trail = [
    `Asked for ${log.model || 'no model'}`,
    log.fallback_index ? `fell back ${log.fallback_index} time(s)` : null,
    log.provider ? `served by ${log.provider}${log.served_model && log.served_model !== log.model ? ` as ${log.served_model}` : ''}` : 'no provider was reached',
    log.key_name ? `with key “${log.key_name}”` : null,
    `${log.attempts} upstream attempt${log.attempts === 1 ? '' : 's'}`,
  ].filter(Boolean);
  main.append(
    h('h1', {}, 'Request ', h('code', {}, log.id)),
    log.error_message ? notice('error', `${log.error_type || 'Error'}: ${log.error_message}`) : null,
    h('div', { class: 'grid2' },
      h('section', { class: 'panel' }, h('h2', {}, 'Summary'), h('dl', { class: 'facts' },
        row('Time', fmt.time(Date.parse(log.timestamp))),
        row('Status', statusBadge(log)),
        row('Endpoint', `${log.front_door} ${log.endpoint}`),
        row('Stream', log.stream ? 'yes' : 'no'),
        row('Stop reason', log.stop_reason),
        row('Virtual key', log.virtual_key),
        row('Cost', fmt.usd(log.cost)),
        row('Tokens', `${fmt.int(log.input_tokens)} in · ${fmt.int(log.output_tokens)} out · ${fmt.int(log.cache_read_tokens)} cache read · ${fmt.int(log.cache_write_tokens)} cache write`),
      )),
      h('section', { class: 'panel' }, h('h2', {}, 'Timings and path'), h('dl', { class: 'facts' },
        row('Total latency', fmt.ms(log.latency_ms)),
        row('First byte', fmt.ms(log.first_byte_ms)),
        row('Gateway overhead', fmt.ms(log.overhead_ms)),
        row('Pass-through', log.pass_through ? 'yes (bytes as the provider sent them)' : 'no (translated)'),
      ), h('h3', {}, 'Attempt trail'), failedAttempts(log), h('ol', { class: 'trail' }, trail.map((t) => h('li', {}, t)))),
    ),
    h('section', { class: 'panel' }, h('h2', {}, 'Input'), json(log.input, 'Not recorded (content logging is off, or was when this request came).')),
    h('section', { class: 'panel' }, h('h2', {}, 'Output'), json(log.output, log.status === 'success'
      ? 'Not recorded (content logging is off, or was when this request came).'
      : 'No answer: the request failed before one came (the error is above).'), log.content_truncated ? notice('info', 'The content was cut short when stored.') : null),
  );
  return null;
}
