// Virtual keys: create one with a budget and a rate limit, see each key's usage (spent,
// reserved and remaining of every budget and limit that applies to it), switch keys off,
// delete them.

import { h, field, fmt, notice, toast } from '../dom.js';
import { get, post, put, del } from '../api.js';

export const title = 'Virtual keys';

const PERIODS = [['1m', 'minute'], ['1h', 'hour'], ['1d', 'day'], ['1w', 'week'], ['1M', 'month']];

function periodSelect(name, chosen) {
  return h('select', { name }, PERIODS.map(([v, label]) => h('option', { value: v, selected: v === chosen }, `per ${label}`)));
}

export async function render(main) {
  const out = h('div', { class: 'form-status' });
  const body = h('div', { class: 'keys' });
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Virtual keys')), out, createForm(out, () => load()), body);
  const load = async () => {
    try {
      const data = await get('/api/governance/virtual-keys');
      const views = await Promise.all(data.data.map((k) => get(`/api/governance/virtual-keys/${encodeURIComponent(k.id)}`).catch(() => ({ virtual_key: k, usage: [] }))));
      body.replaceChildren(...(views.length ? views.map((v) => keyCard(v, out, load)) : [h('p', { class: 'empty' }, 'No virtual keys yet.')]));
    } catch (e) {
      if (e.status !== 401) body.replaceChildren(notice('error', e.message));
    }
  };
  await load();
}

function usageRow(u) {
  const unit = u.measure === 'dollars' ? fmt.usd : (n) => fmt.int(Math.round(n));
  const label = `${u.measure === 'dollars' ? 'Budget' : `${u.measure[0].toUpperCase()}${u.measure.slice(1)}`} (${u.level.replaceAll('_', ' ')}, every ${u.reset_duration})`;
  const id = `meter-${u.id}-${u.measure}`.replace(/[^a-zA-Z0-9_-]/g, '_');
  return h('div', { class: 'usage' },
    h('label', { for: id }, label),
    h('meter', { id, min: '0', max: String(u.max || 1), value: String(u.used + u.reserved), optimum: '0', high: String((u.max || 1) * 0.8) }),
    h('p', { class: 'usage-text' }, `${unit(u.used)} used of ${unit(u.max)} · ${unit(u.remaining)} left${u.reserved ? ` · ${unit(u.reserved)} held by requests in flight` : ''}${u.next_reset_ms ? ` · resets ${fmt.time(u.next_reset_ms)}` : ''}`));
}

function keyCard(view, out, load) {
  const k = view.virtual_key;
  const headingId = `vk-${k.id}`.replace(/[^a-zA-Z0-9_-]/g, '_');
  return h('section', { class: 'panel vkey', 'aria-labelledby': headingId },
    h('div', { class: 'panel-head' },
      h('h2', { id: headingId }, k.name || k.id, k.is_active ? null : h('span', { class: 'badge error' }, 'off')),
      h('div', { class: 'row-actions' },
        h('button', { type: 'button', class: 'secondary', onclick: async () => {
          out.replaceChildren();
          try {
            await put(`/api/governance/virtual-keys/${encodeURIComponent(k.id)}`, { ...k, is_active: !k.is_active });
            toast(`${k.name || k.id} is ${k.is_active ? 'off' : 'on'}.`);
            await load();
          } catch (e) {
            out.append(notice('error', e.message));
          }
        } }, k.is_active ? 'Switch off' : 'Switch on'),
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!confirm(`Delete the virtual key “${k.name || k.id}”? Clients using it will be refused.`)) return;
          out.replaceChildren();
          try {
            await del(`/api/governance/virtual-keys/${encodeURIComponent(k.id)}`);
            toast('Deleted.');
            await load();
          } catch (e) {
            out.append(notice('error', e.message));
          }
        } }, 'Delete'))),
    k.description ? h('p', {}, k.description) : null,
    h('p', {}, 'Key: ', h('code', { class: 'vk-value' }, k.value), ' · id ', h('code', {}, k.id)),
    h('p', { class: 'hint' }, 'Clients send it as x-bf-vk (or as their API key).'),
    view.usage.length ? h('div', { class: 'usages' }, view.usage.map(usageRow)) : h('p', { class: 'empty' }, 'No budget or rate limit applies to this key.'),
    h('p', {}, h('a', { href: `#/logs?virtual_key=${encodeURIComponent(k.value)}` }, `Requests made with ${k.name || 'this key'}`)));
}

function createForm(out, load) {
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' });
  const description = h('input', { type: 'text', name: 'description' });
  const budget = h('input', { type: 'number', name: 'budget', min: '0', step: 'any', placeholder: 'no budget' });
  const budgetPeriod = periodSelect('budget_period', '1M');
  const requests = h('input', { type: 'number', name: 'requests', min: '1', step: '1', placeholder: 'no limit' });
  const requestPeriod = periodSelect('request_period', '1m');
  const tokens = h('input', { type: 'number', name: 'tokens', min: '1', step: '1', placeholder: 'no limit' });
  const tokenPeriod = periodSelect('token_period', '1h');
  const form = h('form', { class: 'panel' },
    h('h2', {}, 'Create a virtual key'),
    field('Name', name),
    field('Description', description),
    h('fieldset', {}, h('legend', {}, 'Budget (US dollars)'),
      h('div', { class: 'row' }, field('Budget', budget), field('Budget period', budgetPeriod))),
    h('fieldset', {}, h('legend', {}, 'Rate limit'),
      h('div', { class: 'row' }, field('Requests', requests), field('Request period', requestPeriod)),
      h('div', { class: 'row' }, field('Tokens', tokens), field('Token period', tokenPeriod))),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create key')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    out.replaceChildren();
    const key = { name: name.value.trim(), description: description.value.trim(), is_active: true, provider_configs: [] };
    if (budget.value) key.budgets = [{ max_limit: Number(budget.value), reset_duration: budgetPeriod.value }];
    const limit = {};
    if (requests.value) Object.assign(limit, { request_max_limit: Number(requests.value), request_reset_duration: requestPeriod.value });
    if (tokens.value) Object.assign(limit, { token_max_limit: Number(tokens.value), token_reset_duration: tokenPeriod.value });
    if (Object.keys(limit).length) key.rate_limit = limit;
    try {
      const made = await post('/api/governance/virtual-keys', key);
      const created = made.virtual_key || made;
      out.append(notice('ok', `Created “${created.name}”. Its key is ${created.value}.`));
      toast(`Created ${created.name}.`);
      form.reset();
      await load();
    } catch (err) {
      out.append(notice('error', err.message));
    }
  });
  return form;
}
