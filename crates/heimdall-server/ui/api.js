// Every request of the UI goes through here, to the gateway's own admin API (the content
// security policy allows no other destination). Errors become sentences a person can act on.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Where the login page sends back to after logging in. */
export function loginHash() {
  const here = location.hash && !location.hash.startsWith('#/login') ? location.hash : '#/dashboard';
  return `#/login?next=${encodeURIComponent(here)}`;
}

/**
 * `method path` with an optional JSON body; resolves to the answer's JSON (null for 204).
 * A 401 sends the browser to the login page.
 */
export async function api(method, path, body) {
  const headers = { 'x-heimdall-ui': '1', accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'Cannot reach the gateway. Check that it is running and try again.');
  }
  if (res.status === 401 && path !== '/api/session') {
    const scheme = res.headers.get('x-heimdall-auth');
    if (scheme) sessionStorage.setItem('heimdall-auth', scheme.toLowerCase());
    if (!location.hash.startsWith('#/login')) location.hash = loginHash();
    throw new ApiError(401, 'Please log in to continue.');
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, explain(res.status, data, text));
  return data;
}

/** The API's message, with what the status means in plain words before it. */
export function explain(status, data, text = '') {
  const said = data?.error?.message || (typeof text === 'string' ? text.slice(0, 300) : '');
  const what = {
    400: 'The gateway did not accept this',
    401: 'Wrong credentials',
    403: 'Not allowed',
    404: 'Not found',
    409: 'This already exists',
    413: 'This is too large',
    415: 'The gateway did not understand the request',
    422: 'Some fields are not valid',
    429: 'Too many requests; wait a moment and try again',
  }[status] || (status >= 500 ? 'The gateway ran into a problem' : `The gateway answered ${status}`);
  return said ? `${what}: ${said}` : `${what}.`;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);
