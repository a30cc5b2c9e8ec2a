// audit.js - operators only: the audit log (who changed what, from
// where, with what result), filtered by account and action, paged.
import {h, fill, field, table, time} from '../dom.js';
import * as api from '../api.js';

export async function render(main, app, params, current) {
  const f = {account: params.get('account') || '', action: params.get('action') || ''};
  const query = {account: f.account || undefined, action: f.action || undefined, limit: 50};
  const first = await api.get('/audit', query);
  if (!current()) return;
  const acct = h('input', {type: 'text', id: 'audit-account', value: f.account, autocomplete: 'off'});
  const action = h('input', {type: 'text', id: 'audit-action', value: f.action, autocomplete: 'off'});
  const slot = h('div', {id: 'audit-table'});
  const more = h('button', {type: 'button', class: 'secondary', id: 'audit-more', onclick: loadMore}, 'Older records');
  let cursor = first.next_cursor;
  const rows = [];
  fill(main, h('h1', {tabindex: '-1'}, 'Audit log'),
    h('form', {class: 'toolbar', onsubmit: ev => {
      ev.preventDefault();
      const q = new URLSearchParams();
      if (acct.value.trim()) q.set('account', acct.value.trim());
      if (action.value.trim()) q.set('action', action.value.trim());
      app.go('#/audit' + (q.toString() ? '?' + q : ''));
    }}, field('Account id', acct), field('Action', action, 'e.g. key.create'),
    h('button', {type: 'submit', id: 'audit-apply'}, 'Show')),
    slot);
  add(first.items || []);

  function add(items) {
    rows.push(...items);
    fill(slot, table('Audit records, newest first', [
      {title: 'Time', cell: r => time(r.time || (r.time_ms ? new Date(r.time_ms).toISOString() : null))},
      {title: 'Actor', cell: r => h('code', {}, r.actor || '')},
      {title: 'Client', cell: r => r.client || ''},
      {title: 'Action', cell: r => h('code', {class: 'audit-action'}, r.action || '')},
      {title: 'Target', cell: r => h('code', {}, r.target || '')},
      {title: 'Account', cell: r => r.account_id || r.account || ''},
      {title: 'Changes', cell: r => changes(r.changes)},
      {title: 'Result', cell: r => h('span', {class: r.result === 'ok' ? 'ok' : 'error'}, r.result || '')},
    ], rows, 'No audit records match.'), cursor ? more : null);
  }

  async function loadMore() {
    const page = await api.get('/audit', {...query, cursor});
    cursor = page.next_cursor;
    add(page.items || []);
    more.focus();
  }
}

// {"field":{"before":…,"after":…}} as "field: before → after" lines.
function changes(c) {
  if (typeof c === 'string') {
    try { c = JSON.parse(c); } catch (e) { return c; }
  }
  const names = Object.keys(c || {});
  if (!names.length) return h('span', {class: 'muted'}, '—');
  return h('ul', {class: 'plain'}, names.map(n => {
    const v = c[n] || {};
    const s = x => x === undefined || x === null ? '∅' : typeof x === 'string' ? x : JSON.stringify(x);
    return h('li', {}, h('code', {}, n), ': ', s(v.before), ' → ', s(v.after));
  }));
}
