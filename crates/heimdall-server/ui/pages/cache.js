// The semantic cache: clear everything, one cache key's entries, or one entry by the
// `x-bf-cache-id` of a hit.

import { h, field, notice, toast } from '../dom.js';
import { del } from '../api.js';

export const title = 'Cache';
/** This page reads nothing when it opens: the shell checks the login first. */
export const probe = true;

export async function render(main) {
  const out = h('div', { class: 'form-status' });
  const run = async (path, what) => {
    out.replaceChildren();
    try {
      const r = await del(path);
      const text = `${what}: removed ${r.cleared} entr${r.cleared === 1 ? 'y' : 'ies'}.`;
      out.append(notice('ok', text));
      toast(text);
    } catch (e) {
      out.append(notice('error', e.message));
    }
  };
  const key = h('input', { type: 'text', name: 'key', required: true, autocomplete: 'off' });
  const id = h('input', { type: 'text', name: 'id', required: true, autocomplete: 'off', placeholder: 'ce_…' });
  const byKey = h('form', { class: 'panel' }, h('h2', {}, 'Clear one cache key'),
    field('Cache key (x-bf-cache-key)', key),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Clear this key')));
  byKey.addEventListener('submit', (e) => { e.preventDefault(); run(`/api/cache/clear-by-key/${encodeURIComponent(key.value.trim())}`, `Key ${key.value.trim()}`); });
  const byId = h('form', { class: 'panel' }, h('h2', {}, 'Clear one entry'),
    field('Entry id (x-bf-cache-id of a hit)', id),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Clear this entry')));
  byId.addEventListener('submit', (e) => { e.preventDefault(); run(`/api/cache/clear/${encodeURIComponent(id.value.trim())}`, `Entry ${id.value.trim()}`); });
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Cache')),
    h('p', {}, 'Answers stored by the semantic_cache plugin. Clearing makes the next identical or similar request go to the provider again.'),
    out,
    h('section', { class: 'panel' }, h('h2', {}, 'Clear everything'),
      h('button', { type: 'button', class: 'danger', onclick: () => {
        if (confirm('Remove every cached answer?')) run('/api/cache/clear', 'Whole cache');
      } }, 'Clear the whole cache')),
    byKey, byId);
}
