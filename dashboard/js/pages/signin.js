// signin.js - the sign-in form: an admin or account key, checked with
// /api/v1/me, kept in this tab's sessionStorage only (api.js).
import {h, fill, field, status} from '../dom.js';
import * as api from '../api.js';

export function render(main, app, done) {
  const input = h('input', {type: 'password', name: 'key', autocomplete: 'off',
    spellcheck: 'false', required: true, id: 'signin-key'});
  const msg = h('div', {id: 'signin-msg', role: 'alert'});
  const form = h('form', {class: 'card narrow', id: 'signin-form', novalidate: true, onsubmit: submit},
    field('API key', input,
      'An operator key, or your account\'s key with the account:manage permission. ' +
      'It stays in this browser tab only and is forgotten when you sign out or close the tab.'),
    h('button', {type: 'submit', id: 'signin-submit'}, 'Sign in'),
    msg);
  fill(main, h('h1', {tabindex: '-1'}, 'Sign in'), form);
  input.focus();

  async function submit(ev) {
    ev.preventDefault();
    const key = input.value.trim();
    if (!key) {
      status(msg, 'Paste your API key.', 'error');
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    status(msg, 'Checking…');
    try {
      const {data} = await api.call('GET', '/me', {key});
      api.saveKey(key);
      input.value = '';
      done(data);
    } catch (e) {
      input.setAttribute('aria-invalid', 'true');
      status(msg, e.status === 401 ? 'This key was refused (unknown, revoked or expired).'
        : e.status === 403 ? 'This key may not manage accounts: it needs the admin or account:manage permission.'
        : api.errorText(e), 'error');
      input.focus();
    }
  }
}
