// Settings → Client Settings (`GET`/`PUT /api/config`): which client headers go upstream,
// direct keys, dropping excess requests, a virtual key on every request, content logging,
// log retention and the largest request body. Applied at once, without a restart.

import { h, field, notice, toast } from '../dom.js';
import { get, put } from '../api.js';

export const title = 'Settings';

const names = (text) => text.split(/[\s,]+/).map((n) => n.trim().toLowerCase()).filter(Boolean);

export async function render(main) {
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Settings')));
  const data = await get('/api/config');
  const c = data.client_config;
  const filter = c.header_filter_config || { allowlist: [], denylist: [] };
  const allow = h('textarea', { name: 'allowlist', rows: '4', spellcheck: 'false', value: filter.allowlist.join('\n') });
  const deny = h('textarea', { name: 'denylist', rows: '4', spellcheck: 'false', value: filter.denylist.join('\n') });
  const check = (name, on) => h('input', { type: 'checkbox', name, checked: on });
  const direct = check('allow_direct_keys', c.allow_direct_keys);
  const drop = check('drop_excess_requests', c.drop_excess_requests);
  const enforce = check('enforce_auth_on_inference', c.enforce_auth_on_inference);
  const noContent = check('disable_content_logging', c.disable_content_logging);
  const retention = h('input', { type: 'number', name: 'log_retention_days', min: '0', max: '36500', step: '1', value: String(c.log_retention_days ?? 0) });
  const body = h('input', { type: 'number', name: 'max_request_body_size_mb', min: '1', max: '65536', step: '1', value: String(c.max_request_body_size_mb ?? 100) });
  const out = h('div', { class: 'form-status' });
  const form = h('form', { class: 'panel settings' },
    h('h2', {}, 'Client Settings'),
    h('fieldset', {}, h('legend', {}, 'Headers sent upstream'),
      field('Allowlist (one header name per line)', allow, 'Client headers forwarded to providers, such as anthropic-beta.'),
      field('Denylist (one header name per line)', deny, 'Client headers never forwarded.')),
    h('fieldset', {}, h('legend', {}, 'Requests'),
      field('Allow direct keys (a client may send its own provider key)', direct),
      field('Drop excess requests (answer 529 at once when a provider queue is full)', drop),
      field('Require a virtual key on every inference request', enforce),
      field('Largest request body (MiB)', body)),
    h('fieldset', {}, h('legend', {}, 'Logging'),
      field('Do not store request and answer content in logs', noContent),
      field('Keep request logs for (days, 0 = for ever)', retention)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save settings')),
    out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    out.replaceChildren();
    const change = {
      client_config: {
        header_filter_config: { allowlist: names(allow.value), denylist: names(deny.value) },
        allow_direct_keys: direct.checked,
        drop_excess_requests: drop.checked,
        enforce_auth_on_inference: enforce.checked,
        disable_content_logging: noContent.checked,
        log_retention_days: Number(retention.value || 0),
        max_request_body_size_mb: Number(body.value || 100),
      },
    };
    try {
      const now = await put('/api/config', change);
      const f = now.client_config.header_filter_config;
      allow.value = f.allowlist.join('\n');
      deny.value = f.denylist.join('\n');
      out.append(notice('ok', 'Saved. The gateway uses these settings from now on.'));
      toast('Settings saved.');
    } catch (err) {
      out.append(notice('error', err.message));
    }
  });
  main.append(form);
}
