// logs.js - the account's access log: denials and a sample of allowed
// requests (time, key prefix, client, method, path, status, code),
// filtered by key, status and time, newest first, paged by cursor.
import {h, fill, field, table, time, prefix, noUsage, isoTime} from '../dom.js';
import * as api from '../api.js';

const SINCE = [['1h', 'Last hour', 3600], ['24h', 'Last 24 hours', 86400], ['7d', 'Last 7 days', 7 * 86400]];
const STATUS = [['', 'Any status'], ['200', '200 allowed'], ['400', '400 invalid request'], ['401', '401 unauthorized'],
  ['403', '403 forbidden'], ['429', '429 rate limited'], ['503', '503 unavailable']];

export async function render(main, app, params, current) {
  const accountId = app.accountId(params);
  const keys = (await api.get('/accounts/' + api.enc(accountId) + '/keys', {limit: 200})).items || [];
  const f = {key: params.get('key') || '', status: params.get('status') || '', since: params.get('since') || '24h'};
  const sinceS = (SINCE.find(s => s[0] === f.since) || SINCE[1])[2];
  const query = {
    key: f.key || undefined, status: f.status || undefined, limit: 50,
    since: isoTime(Date.now() / 1000 - sinceS),
  };
  let first;
  try {
    first = await api.get('/accounts/' + api.enc(accountId) + '/events', query);
  } catch (e) {
    if (!api.noUsageStore(e)) throw e;
    if (current()) fill(main, noUsage('Access logs'));
    return;
  }
  if (!current()) return;

  const keySel = h('select', {id: 'logs-key', name: 'key'}, h('option', {value: ''}, 'Any key'),
    keys.map(k => h('option', {value: k.id, selected: k.id === f.key}, (k.name || k.id) + ' (' + prefix(k.prefix) + ')')));
  const statusSel = h('select', {id: 'logs-status', name: 'status'},
    STATUS.map(([v, t]) => h('option', {value: v, selected: v === f.status}, t)));
  const sinceSel = h('select', {id: 'logs-since', name: 'since'},
    SINCE.map(([v, t]) => h('option', {value: v, selected: v === f.since}, t)));
  const filters = h('form', {class: 'toolbar', id: 'logs-filters', onsubmit: ev => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (params.get('account')) q.set('account', accountId);
    if (keySel.value) q.set('key', keySel.value);
    if (statusSel.value) q.set('status', statusSel.value);
    q.set('since', sinceSel.value);
    app.go('#/logs?' + q.toString());
  }}, field('Key', keySel), field('Status', statusSel), field('Time', sinceSel),
  h('button', {type: 'submit', id: 'logs-apply'}, 'Show'));

  const rows = [];
  const slot = h('div', {id: 'logs-table'});
  const more = h('button', {type: 'button', id: 'logs-more', class: 'secondary', onclick: loadMore}, 'Older events');
  let cursor = first.next_cursor;
  add(first.items || []);
  fill(main, h('h1', {tabindex: '-1'}, 'Access logs'),
    h('p', {class: 'muted'}, 'Every denied request, and a sample of allowed ones.'),
    filters, slot);

  function add(items) {
    // By key here too: the filter holds whatever the API does with ?key=.
    rows.push(...items.filter(e => !f.key || e.key_id === f.key));
    fill(slot, table('Access log events, newest first', [
      {title: 'Time', cell: e => time(e.time)},
      {title: 'Key', cell: e => e.key_prefix ? h('code', {}, prefix(e.key_prefix)) : h('span', {class: 'muted'}, 'none')},
      {title: 'Client', cell: e => e.client || ''},
      {title: 'Method', cell: e => e.method || ''},
      {title: 'Path', cell: e => h('code', {class: 'path'}, e.path || '')},
      {title: 'Status', cell: e => h('span', {class: 'status s' + String(e.status).charAt(0)}, String(e.status))},
      {title: 'Code', cell: e => e.code ? h('code', {}, e.code) : h('span', {class: 'muted'}, 'allowed')},
    ], rows, 'No events match.'), cursor ? more : null);
  }

  async function loadMore() {
    const page = await api.get('/accounts/' + api.enc(accountId) + '/events', {...query, cursor});
    cursor = page.next_cursor;
    add(page.items || []);
    app.announce((page.items || []).length + ' older events loaded.');
    more.focus();
  }
}
