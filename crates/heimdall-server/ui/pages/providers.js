// Providers and their keys. Key values are write-only: the API answers a redacted form
// (`sk-…abcd`), and an edit that leaves the value blank keeps the stored one (the key is sent
// back without `value`). A typed value is cleared from the form once sent.

import { h, field, notice, toast } from '../dom.js';
import { get, post, put, del } from '../api.js';

export const title = 'Providers';

const FAMILIES = ['anthropic', 'openai', 'azure', 'bedrock', 'vertex', 'gemini', 'ollama', 'groq', 'mistral',
  'openrouter', 'xai', 'deepseek', 'cerebras', 'fireworks', 'together', 'perplexity', 'vllm', 'sgl'];

const list = (text) => text.split(',').map((m) => m.trim()).filter(Boolean);

export async function render(main) {
  const out = h('div', { class: 'form-status' });
  const body = h('div', { class: 'providers' });
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Providers and keys')), out, body, addProviderForm(out, () => load()));
  const load = async () => {
    try {
      const data = await get('/api/providers');
      body.replaceChildren(...(data.providers.length
        ? data.providers.map((p) => providerCard(p, out, load))
        : [h('p', { class: 'empty' }, 'No provider is configured yet. Add one below.')]));
    } catch (e) {
      if (e.status !== 401) body.replaceChildren(notice('error', e.message));
    }
  };
  await load();
}

/** The provider as a PUT body: the view with one key changed (or added, or removed). */
function withKeys(p, keys) {
  const section = { ...p, keys };
  delete section.name;
  return section;
}

async function save(p, keys, out, load, done) {
  out.replaceChildren();
  try {
    await put(`/api/providers/${encodeURIComponent(p.name)}`, withKeys(p, keys));
    toast(done);
    out.append(notice('ok', done));
    await load();
  } catch (e) {
    out.append(notice('error', e.message));
  }
}

function keyForm({ legend, key, submit, onSubmit, onCancel }) {
  const name = h('input', { type: 'text', name: 'name', value: key?.name || '', required: true, readonly: Boolean(key), autocomplete: 'off' });
  const value = h('input', { type: 'password', name: 'value', autocomplete: 'new-password', required: !key, spellcheck: 'false' });
  const models = h('input', { type: 'text', name: 'models', value: (key?.models || ['*']).join(', ') });
  const weight = h('input', { type: 'number', name: 'weight', min: '0', step: 'any', value: String(key?.weight ?? 1) });
  const form = h('form', { class: 'key-form' },
    h('fieldset', {}, h('legend', {}, legend),
      field('Key name', name),
      field(key ? 'New key value (leave blank to keep the current one)' : 'Key value', value, 'Stored by the gateway; never shown again.'),
      field('Models (comma-separated, * for all)', models),
      field('Weight', weight),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, submit),
        onCancel ? h('button', { type: 'button', class: 'secondary', onclick: onCancel }, 'Cancel') : null)));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const k = { name: name.value.trim(), models: list(models.value), weight: Number(weight.value || 1) };
    if (value.value) k.value = value.value;
    // The secret leaves the page with the request, and nowhere else.
    value.value = '';
    await onSubmit(k);
  });
  return form;
}

function providerCard(p, out, load) {
  const keys = p.keys || [];
  const editArea = h('div');
  const card = h('section', { class: 'panel provider', 'aria-labelledby': `prov-${p.name}` },
    h('div', { class: 'panel-head' },
      h('h2', { id: `prov-${p.name}` }, p.name),
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(`Delete the provider “${p.name}” and all its keys?`)) return;
        out.replaceChildren();
        try {
          await del(`/api/providers/${encodeURIComponent(p.name)}`);
          toast(`Deleted ${p.name}.`);
          await load();
        } catch (e) {
          out.append(notice('error', e.message));
        }
      } }, `Delete ${p.name}`)),
    p.network_config?.base_url ? h('p', {}, 'Base URL: ', h('code', {}, p.network_config.base_url)) : null,
    keys.length
      ? h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Key', 'Value', 'Models', 'Weight', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, keys.map((k, i) => h('tr', {},
          h('td', {}, k.name || `key ${i + 1}`),
          h('td', {}, h('code', { class: 'redacted' }, k.value || '–')),
          h('td', {}, (k.models || ['*']).join(', ')),
          h('td', { class: 'num' }, String(k.weight ?? 1)),
          h('td', { class: 'row-actions' },
            h('button', { type: 'button', class: 'secondary', onclick: () => {
              editArea.replaceChildren(keyForm({
                legend: `Edit key ${k.name || i + 1} of ${p.name}`,
                key: k,
                submit: 'Save key',
                onCancel: () => editArea.replaceChildren(),
                onSubmit: async (changed) => {
                  const next = keys.map((old, j) => {
                    if (j !== i) return old;
                    const merged = { ...old, ...changed };
                    // No new value: send none, and the gateway keeps the stored one.
                    if (!changed.value) delete merged.value;
                    return merged;
                  });
                  await save(p, next, out, load, `Saved key ${k.name} of ${p.name}.`);
                },
              }));
              editArea.querySelector('input:not([readonly])')?.focus();
            } }, 'Edit'),
            h('button', { type: 'button', class: 'danger', onclick: async () => {
              if (!confirm(`Remove the key “${k.name}” from ${p.name}?`)) return;
              await save(p, keys.filter((_, j) => j !== i), out, load, `Removed key ${k.name}.`);
            } }, 'Remove')),
        ))),
      ))
      : h('p', { class: 'empty' }, 'No keys (a provider such as Ollama may need none).'),
    editArea,
    h('details', {}, h('summary', {}, `Add a key to ${p.name}`), keyForm({
      legend: `New key for ${p.name}`,
      submit: 'Add key',
      onSubmit: async (k) => save(p, [...keys, k], out, load, `Added key ${k.name} to ${p.name}.`),
    })),
  );
  return card;
}

function addProviderForm(out, load) {
  const name = h('input', { type: 'text', name: 'provider', required: true, list: 'provider-families', autocomplete: 'off' });
  const keyName = h('input', { type: 'text', name: 'key_name', value: 'default', autocomplete: 'off' });
  const value = h('input', { type: 'password', name: 'key_value', autocomplete: 'new-password', spellcheck: 'false' });
  const models = h('input', { type: 'text', name: 'models', value: '*' });
  const baseUrl = h('input', { type: 'url', name: 'base_url', placeholder: 'https://… (optional)' });
  const form = h('form', { class: 'panel' },
    h('h2', {}, 'Add a provider'),
    h('datalist', { id: 'provider-families' }, FAMILIES.map((f) => h('option', { value: f }))),
    field('Provider', name, 'A provider family (openai, anthropic, …); it is also the model prefix: openai/gpt-4o-mini.'),
    field('Key name', keyName),
    field('Key value', value, 'Stored by the gateway; never shown again. Leave blank for a provider without keys.'),
    field('Models (comma-separated, * for all)', models),
    field('Base URL', baseUrl),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add provider')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    out.replaceChildren();
    const body = { provider: name.value.trim(), keys: [] };
    if (value.value) body.keys.push({ name: keyName.value.trim() || 'default', value: value.value, models: list(models.value), weight: 1 });
    value.value = '';
    if (baseUrl.value.trim()) body.network_config = { base_url: baseUrl.value.trim() };
    try {
      await post('/api/providers', body);
      toast(`Added ${body.provider}.`);
      out.append(notice('ok', `Added the provider ${body.provider}.`));
      form.reset();
      await load();
    } catch (err) {
      out.append(notice('error', err.message));
    }
  });
  return form;
}
