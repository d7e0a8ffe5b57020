// The login page: `client.admin_auth`'s credentials (user name and password, or a token)
// exchanged for a session cookie by `POST /api/session`.

import { h, field, notice } from '../dom.js';
import { api, ApiError } from '../api.js';

export const title = 'Log in';

/** The scheme the gateway asks for: from its last refusal, or by asking once. */
async function scheme() {
  const known = sessionStorage.getItem('heimdall-auth');
  if (known) return known;
  const res = await fetch('/api/config', { headers: { 'x-heimdall-ui': '1' }, credentials: 'same-origin' });
  if (res.status === 401) return (res.headers.get('x-heimdall-auth') || 'basic').toLowerCase();
  return 'none';
}

export async function render(main, _args, query) {
  const next = query.get('next') || '#/dashboard';
  const kind = await scheme();
  if (kind === 'none') {
    location.hash = next;
    return;
  }
  const out = h('div', { class: 'form-status' });
  const inputs = kind === 'bearer'
    ? [field('Admin token', h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true }))]
    : [
        field('User name', h('input', { type: 'text', name: 'username', autocomplete: 'username', required: true })),
        field('Password', h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true })),
      ];
  const form = h('form', { class: 'card login', novalidate: false },
    h('h1', {}, 'Log in to Heimdall'),
    h('p', {}, 'The admin pages need the credentials set in client.admin_auth.'),
    ...inputs,
    h('button', { type: 'submit' }, 'Log in'),
    out,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    const data = Object.fromEntries(new FormData(form));
    try {
      await api('POST', '/api/session', data);
      sessionStorage.setItem('heimdall-session', '1');
      document.getElementById('logout').hidden = false;
      for (const input of form.querySelectorAll('input')) input.value = '';
      location.hash = next.startsWith('#/') && !next.startsWith('#/login') ? next : '#/dashboard';
    } catch (e) {
      const message = e instanceof ApiError && e.status === 401
        ? (kind === 'bearer' ? 'That token is not right. Try again.' : 'The user name or password is not right. Try again.')
        : e.message;
      out.append(notice('error', message));
      form.querySelector('input').focus();
    }
  });
  main.append(form);
  form.querySelector('input').focus();
}
