// The web UI's shell: a hash router (`#/logs`, `#/logs/<id>`, …) that renders one page at a
// time into <main>, marks the current link, and moves focus to the new page's heading so a
// keyboard or screen-reader user lands where the content is.

import { clear, h, notice } from './dom.js';
import { api, loginHash } from './api.js';
import * as dashboard from './pages/dashboard.js';
import * as logs from './pages/logs.js';
import * as providers from './pages/providers.js';
import * as keys from './pages/keys.js';
import * as settings from './pages/settings.js';
import * as cache from './pages/cache.js';
import * as login from './pages/login.js';

const PAGES = { dashboard, logs, providers, keys, settings, cache, login };

let cleanup = null;

function parse(hash) {
  const raw = hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || 'dashboard', args: parts.slice(1), query: new URLSearchParams(query) };
}

async function route() {
  const { name, args, query } = parse(location.hash);
  const page = PAGES[name];
  const main = document.getElementById('main');
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a page's cleanup failing must not stop the next page */
    }
    cleanup = null;
  }
  clear(main);
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.body.classList.toggle('on-login', name === 'login');
  if (!page) {
    main.append(h('h1', { tabindex: '-1' }, 'Not found'), notice('error', `There is no page called “${name}”.`));
    main.querySelector('h1').focus();
    return;
  }
  document.title = `${page.title} · Heimdall`;
  try {
    if (page.probe) await api('GET', '/api/config').catch((e) => { if (e.status === 401) throw e; });
    cleanup = (await page.render(main, args, query)) || null;
  } catch (e) {
    if (e.status !== 401) main.append(notice('error', e.message || String(e)));
  }
  const heading = main.querySelector('h1');
  if (heading && !main.contains(document.activeElement)) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }
}

document.getElementById('logout').addEventListener('click', async () => {
  try {
    await api('DELETE', '/api/session');
  } catch {
    /* logged out already */
  }
  sessionStorage.removeItem('heimdall-session');
  location.hash = loginHash();
});

export function showLogout(on) {
  document.getElementById('logout').hidden = !on;
}

showLogout(sessionStorage.getItem('heimdall-session') === '1');
window.addEventListener('hashchange', route);
if (!location.hash) history.replaceState(null, '', '#/dashboard');
route();
