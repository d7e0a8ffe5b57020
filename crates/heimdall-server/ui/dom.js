// Building the page through the DOM only: text goes in as text (never parsed as HTML), so a
// model name or an error message from a client cannot inject markup; and nothing here needs
// inline script or style, which the content security policy forbids.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (name === 'value' && 'value' in el && el.namespaceURI !== SVG_NS) {
      el.value = value;
    } else if (name === 'checked' || name === 'selected') {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children: nodes, strings (as text), arrays of either; null and false are skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('a', {href: '#/'}, 'text', otherNode). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let uid = 0;
/** A fresh element id, for labels and descriptions. */
export function nextId(prefix = 'f') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: the label is tied to the input by id. */
export function field(label, input, hint) {
  const id = input.id || nextId();
  input.id = id;
  const parts = [h('label', { for: id }, label), input];
  if (hint) {
    const hintId = `${id}-hint`;
    input.setAttribute('aria-describedby', hintId);
    parts.push(h('p', { class: 'hint', id: hintId }, hint));
  }
  return h('div', { class: input.type === 'checkbox' ? 'field check' : 'field' }, ...parts);
}

/** A message for screen readers and eyes alike (`kind`: ok, error, info). */
export function notice(kind, text) {
  return h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** A short message in the status area, gone after a few seconds. */
export function toast(text) {
  const el = document.getElementById('status');
  if (!el) return;
  el.textContent = text;
  el.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove('shown'), 4000);
}

export const fmt = {
  int: (n) => (n ?? 0).toLocaleString('en-US'),
  ms: (n) => (n === null || n === undefined ? '–' : n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${Math.round(n)} ms`),
  usd: (n) => (n === null || n === undefined ? '–' : n === 0 ? '$0' : n < 0.01 ? `$${n.toFixed(6)}` : `$${n.toFixed(2)}`),
  /** Short axis labels: two significant digits, no trailing zeros ($0.00005). */
  usdAxis: (n) => (n === 0 ? '$0' : `$${Number(n.toPrecision(2))}`),
  pct: (n) => `${(n ?? 0).toFixed(1)} %`,
  time: (ms) => new Date(ms).toLocaleString('en-GB', { hour12: false }),
  clock: (ms) => new Date(ms).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', hour12: false }),
  clockSeconds: (ms) => new Date(ms).toLocaleTimeString('en-GB', { hour12: false }),
  day: (ms) => new Date(ms).toLocaleDateString('en-GB', { day: '2-digit', month: 'short' }),
};
