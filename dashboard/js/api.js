// api.js - the admin API (/api/v1, docs/admin-api.md) from the browser.
//
// The key the reader signed in with lives in this tab's sessionStorage
// only: never a cookie (so no other site can make the browser send it),
// never localStorage (it goes with the tab), and it is sent as
// Authorization: Bearer.  Signing out removes it.

const STORE = 'keygate.key';

export function savedKey() {
  return sessionStorage.getItem(STORE);
}

export function saveKey(key) {
  sessionStorage.setItem(STORE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(STORE);
}

// An API error: status, code and message from {"error":{...}}.
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || code || ('HTTP ' + status));
    this.status = status;
    this.code = code || '';
    this.field = field || '';
  }
}

// Called with the error when the key is refused (401): the page goes
// back to the sign-in form.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

// call(method, path, {body, query, etag, key}) -> {data, etag}.
export async function call(method, path, opts = {}) {
  const key = opts.key || savedKey();
  const headers = {Accept: 'application/json'};
  if (key) headers.Authorization = 'Bearer ' + key;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.etag) headers['If-Match'] = opts.etag;
  let url = '/api/v1' + path;
  if (opts.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query))
      if (v !== undefined && v !== null && v !== '') q.set(k, v);
    const s = q.toString();
    if (s) url += '?' + s;
  }
  let res;
  try {
    res = await fetch(url, {
      method, headers, cache: 'no-store', credentials: 'omit',
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
    });
  } catch (e) {
    throw new ApiError(0, 'network', 'keygated did not answer: ' + e.message);
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = null; }
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    const e = new ApiError(res.status, err.code, err.message || res.statusText, err.field);
    if (res.status === 401 && !opts.key) onUnauthorized(e);
    throw e;
  }
  return {data, etag: res.headers.get('ETag')};
}

export async function get(path, query) {
  return (await call('GET', path, {query})).data;
}

export async function post(path, body) {
  return (await call('POST', path, {body: body ?? {}})).data;
}

export const enc = encodeURIComponent;

// What to tell the reader about a failed call.
export function errorText(e) {
  if (e instanceof ApiError) {
    if (e.status === 403 || e.status === 404) return 'Not available to this key: ' + e.message;
    return e.message + (e.code ? ' (' + e.code + ')' : '');
  }
  return String(e && e.message ? e.message : e);
}

// The service has no usage store (a policy without a usage: section):
// the usage, events and top routes answer 501.
export function noUsageStore(e) {
  return e instanceof ApiError && e.status === 501;
}
