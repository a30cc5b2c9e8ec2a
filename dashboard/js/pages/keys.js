// keys.js - the account's API keys: the list, Create New API Key (the
// key shown once), rotate (grace period, linked keys) and revoke (after
// a confirmation naming the key).
import {h, fill, field, table, time, prefix, badge, status, fmtWindow} from '../dom.js';
import * as api from '../api.js';
import {confirmDialog} from './dialog.js';

export async function render(main, app, params, current) {
  const accountId = app.accountId(params);
  if (!accountId) {
    fill(main, h('h1', {tabindex: '-1'}, 'API keys'), h('p', {}, 'This key belongs to no account.'));
    return;
  }
  let account = app.me.account && app.me.account.id === accountId ? app.me.account : null;
  try {
    account = await api.get('/accounts/' + api.enc(accountId));
  } catch (e) {
    if (!account) throw e;
  }
  const keys = await listKeys(accountId);
  if (!current()) return;

  const msg = h('div', {id: 'keys-msg', 'aria-live': 'polite'});
  const shown = h('div', {id: 'newkey-slot'});
  const formSlot = h('div', {});
  const listSlot = h('div', {id: 'keys-list'});
  const createBtn = h('button', {type: 'button', id: 'create-key', 'aria-expanded': 'false',
    onclick: () => toggleForm()}, 'Create New API Key');

  fill(main,
    h('h1', {tabindex: '-1'}, 'API keys'),
    h('p', {class: 'lead'}, 'Account ', h('strong', {}, account.name || account.id), ' ',
      h('span', {class: 'muted'}, '(' + account.id + ', plan ' + (account.plan || '?') + ')'), ' ', badge(account.status)),
    createBtn, formSlot, shown, msg, listSlot);
  drawList(keys);

  function toggleForm(open) {
    const willOpen = open ?? formSlot.childElementCount === 0;
    createBtn.setAttribute('aria-expanded', String(willOpen));
    if (!willOpen) { fill(formSlot); createBtn.focus(); return; }
    fill(formSlot, createForm(account, async (body) => {
      const res = await api.post('/accounts/' + api.enc(accountId) + '/keys', body);
      toggleForm(false);
      showOnce(shown, res.key, res.record, 'Your new API key');
      app.announce('Key created. Copy it now: it will not be shown again.');
      await refresh();
    }, () => toggleForm(false)));
    formSlot.querySelector('input').focus();
  }

  async function refresh() {
    drawList(await listKeys(accountId));
  }

  function drawList(items) {
    const byId = new Map(items.map(k => [k.id, k]));
    fill(listSlot, h('h2', {}, 'Keys'), table('API keys of ' + (account.name || account.id), [
      {title: 'Name', cell: k => h('span', {class: 'key-name'}, k.name || '(no name)')},
      {title: 'Key', cell: k => h('code', {class: 'key-prefix'}, prefix(k.prefix))},
      {title: 'Permissions', cell: k => list(k.permissions, 'plan default')},
      {title: 'Networks', cell: k => list(k.allowed_cidrs, 'any')},
      {title: 'Limits', cell: k => limits(k.limits)},
      {title: 'Status', cell: k => [badge(k.status), linked(k, byId)]},
      {title: 'Last used', cell: k => time(k.last_used)},
      {title: 'Created', cell: k => time(k.created)},
      {title: 'Expires', cell: k => time(k.expires, 'never')},
      {title: 'Actions', cell: k => actions(k)},
    ], items, 'No keys yet. Create one above.'));
  }

  function actions(k) {
    if (k.status === 'revoked' || k.status === 'expired') return h('span', {class: 'muted'}, '—');
    const label = '“' + (k.name || k.id) + '”';
    return h('div', {class: 'actions'},
      h('button', {type: 'button', class: 'secondary', 'data-action': 'rotate', 'data-key': k.id,
        'aria-label': 'Rotate ' + label, onclick: () => rotate(k)}, 'Rotate'),
      h('button', {type: 'button', class: 'danger', 'data-action': 'revoke', 'data-key': k.id,
        'aria-label': 'Revoke ' + label, onclick: () => revoke(k)}, 'Revoke'));
  }

  async function rotate(k) {
    const grace = h('select', {id: 'rotate-grace'},
      [['0s', 'none: the old key stops now'], ['1h', '1 hour'], ['1d', '1 day'], ['7d', '7 days']]
        .map(([v, t]) => h('option', {value: v, selected: v === '1d'}, t)));
    const ok = await confirmDialog({
      title: 'Rotate key',
      text: ['Rotate the key “', k.name || k.id, '” (', prefix(k.prefix), ')? A new key replaces it; ' +
        'the old one keeps working for the grace period, then stops.'],
      extra: field('Grace period', grace),
      confirm: 'Rotate', danger: false,
    });
    if (!ok) return;
    try {
      const res = await api.post('/keys/' + api.enc(k.id) + '/rotate', {grace: grace.value});
      showOnce(shown, res.key, res.record, 'The new key replacing “' + (k.name || k.id) + '”');
      app.announce('Key rotated. Copy the new key now: it will not be shown again.');
      await refresh();
    } catch (e) {
      status(msg, api.errorText(e), 'error');
    }
  }

  async function revoke(k) {
    const ok = await confirmDialog({
      title: 'Revoke key',
      text: ['Revoke the key “', k.name || k.id, '” (', prefix(k.prefix), ')? ' +
        'Requests with it are refused from now on. This cannot be undone.'],
      confirm: 'Revoke key', danger: true,
    });
    if (!ok) return;
    try {
      await api.post('/keys/' + api.enc(k.id) + '/revoke', {});
      status(msg, 'Revoked “' + (k.name || k.id) + '”.', 'ok');
      await refresh();
    } catch (e) {
      status(msg, api.errorText(e), 'error');
    }
  }
}

async function listKeys(accountId) {
  const items = [];
  let cursor = null;
  // A customer has a handful of keys; stop at 1000 all the same.
  do {
    const page = await api.get('/accounts/' + api.enc(accountId) + '/keys', {limit: 200, cursor});
    items.push(...(page.items || []));
    cursor = page.next_cursor;
  } while (cursor && items.length < 1000);
  return items;
}

function list(v, none) {
  if (!v || !v.length) return h('span', {class: 'muted'}, none);
  return h('ul', {class: 'plain'}, v.map(x => h('li', {}, h('code', {}, x))));
}

function limits(l) {
  const names = Object.keys(l || {});
  if (!names.length) return h('span', {class: 'muted'}, 'plan');
  return h('ul', {class: 'plain'}, names.map(n => h('li', {},
    n + ': ' + l[n].count + '/' + fmtWindow(l[n].window) + (l[n].burst ? ' burst ' + l[n].burst : ''))));
}

function linked(k, byId) {
  const out = [];
  const name = id => {
    const o = byId.get(id);
    return o ? '“' + (o.name || id) + '” ' + prefix(o.prefix) : id;
  };
  if (k.replaced_by) out.push(h('div', {class: 'link-note'}, 'replaced by ', name(k.replaced_by)));
  if (k.replaces) out.push(h('div', {class: 'link-note'}, 'replaces ', name(k.replaces)));
  return out;
}

// The form behind Create New API Key.  Enterprise accounts also set
// permissions, networks, expiry and per-key limits (the other plans'
// keys follow the plan).
function createForm(account, submit, cancel) {
  const enterprise = account.plan === 'enterprise';
  const name = h('input', {type: 'text', id: 'key-name', required: true, maxlength: '200', autocomplete: 'off'});
  const perms = h('input', {type: 'text', id: 'key-perms', autocomplete: 'off'});
  const nets = h('input', {type: 'text', id: 'key-nets', autocomplete: 'off'});
  const expires = h('input', {type: 'date', id: 'key-expires'});
  const lims = h('input', {type: 'text', id: 'key-limits', autocomplete: 'off'});
  const msg = h('div', {id: 'create-msg', role: 'alert'});
  const form = h('form', {class: 'card', id: 'create-form', novalidate: true, onsubmit: onSubmit},
    h('h2', {}, 'Create New API Key'),
    field('Name (required)', name, 'What the key is for, e.g. "Production App".'),
    enterprise ? h('fieldset', {},
      h('legend', {}, 'Enterprise settings (optional)'),
      field('Permissions', perms, 'Comma separated, e.g. scrape:read, jobs:*. Empty: every permission the account allows.'),
      field('Allowed networks', nets, 'Comma separated CIDRs, e.g. 203.0.113.0/24. Empty: any address the account allows.'),
      field('Expires on', expires, 'Empty: never.'),
      field('Per-key limits', lims, 'Comma separated name=count/window[:burst], for the plan\'s limits counted per key ' +
        '(the account\'s own are set on the account), e.g. hour=1000/1h.'))
      : h('p', {class: 'muted'}, 'Keys on the ' + (account.plan || '') + ' plan follow the plan\'s limits.'),
    h('div', {class: 'buttons'},
      h('button', {type: 'submit', id: 'create-submit'}, 'Create key'),
      h('button', {type: 'button', class: 'secondary', onclick: cancel}, 'Cancel')),
    msg);
  return form;

  async function onSubmit(ev) {
    ev.preventDefault();
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    const body = {name: name.value.trim()};
    if (!body.name) return invalid(name, 'Give the key a name.');
    if (enterprise) {
      const split = s => s.split(',').map(x => x.trim()).filter(Boolean);
      if (perms.value.trim()) body.permissions = split(perms.value);
      if (nets.value.trim()) body.allowed_cidrs = split(nets.value);
      if (expires.value) body.expires = expires.value + 'T23:59:59Z';
      if (lims.value.trim()) {
        body.limits = {};
        for (const item of split(lims.value)) {
          const m = /^([A-Za-z0-9_.-]+)=(\d+)\/(\d+)([smhd])(?::(\d+))?$/.exec(item);
          if (!m) return invalid(lims, '“' + item + '” is not name=count/window (e.g. hour=1000/1h).');
          body.limits[m[1]] = {count: +m[2], window: +m[3] * {s: 1, m: 60, h: 3600, d: 86400}[m[4]],
            burst: m[5] ? +m[5] : 0};
        }
      }
    }
    status(msg, 'Creating…');
    try {
      await submit(body);
    } catch (e) {
      const target = {name, permissions: perms, allowed_cidrs: nets, expires, limits: lims}[e.field];
      invalid(target || name, api.errorText(e));
    }
  }

  function invalid(el, text) {
    el.setAttribute('aria-invalid', 'true');
    status(msg, text, 'error');
    el.focus();
  }
}

// The new key, once: a read-only field, a copy button, a plain warning.
// Dismissing it drops the only copy the page had.
function showOnce(slot, key, record, title) {
  const value = h('input', {type: 'text', readonly: true, id: 'newkey-value', class: 'mono',
    'aria-describedby': 'newkey-warning', spellcheck: 'false'});
  value.value = key;
  const copied = h('span', {id: 'newkey-copied', role: 'status'});
  const copy = h('button', {type: 'button', id: 'newkey-copy', onclick: doCopy}, 'Copy');
  const done = h('button', {type: 'button', id: 'newkey-done', class: 'secondary',
    onclick: () => { value.value = ''; fill(slot); document.getElementById('create-key')?.focus(); }},
  'Done, I have stored it');
  fill(slot, h('section', {class: 'card newkey', id: 'newkey', 'aria-labelledby': 'newkey-title'},
    h('h2', {id: 'newkey-title'}, title),
    h('p', {class: 'warning', id: 'newkey-warning'},
      'Copy this key now and store it somewhere safe. It will not be shown again: ' +
      'keygate keeps only its hash. If you lose it, rotate or revoke it and create another.'),
    h('div', {class: 'copyrow'}, field('Key for “' + (record && record.name || '') + '”', value), copy, copied),
    done));
  copy.focus();

  async function doCopy() {
    try {
      await navigator.clipboard.writeText(value.value);
    } catch (e) {
      // No clipboard API (an insecure origin): select it for Ctrl+C.
      value.select();
      fill(copied, 'Selected: press Ctrl+C to copy.');
      return;
    }
    fill(copied, 'Copied.');
  }
}
