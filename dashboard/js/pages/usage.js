// usage.js - requests over the last 24 h, 7 days or 30 days, allowed
// and denied by code, for the account or one key, with the plan's limit
// on the chart and the remaining quota of each limit now.
import {h, fill, field, table, fmtNumber, fmtWindow, time, noUsage, isoTime as iso} from '../dom.js';
import * as api from '../api.js';
import {usageChart} from '../chart.js';
import {accountLimits} from '../plans.js';

const RANGES = [
  {id: '24h', title: 'Last 24 hours', since: 86400, by: 'hour', span: 3600},
  {id: '7d', title: 'Last 7 days', since: 7 * 86400, by: 'hour', span: 3600},
  {id: '30d', title: 'Last 30 days', since: 30 * 86400, by: 'day', span: 86400},
];

export async function render(main, app, params, current) {
  const accountId = app.accountId(params);
  const range = RANGES.find(r => r.id === params.get('range')) || RANGES[0];
  const keyId = params.get('key') || '';
  const account = await api.get('/accounts/' + api.enc(accountId));
  const keys = (await api.get('/accounts/' + api.enc(accountId) + '/keys', {limit: 200})).items || [];
  const now = Math.floor(Date.now() / 1000);
  const path = keyId ? '/keys/' + api.enc(keyId) + '/usage' : '/accounts/' + api.enc(accountId) + '/usage';
  const since = now - range.since;
  let usage, recent;
  try {
    usage = await api.get(path, {since: iso(since), until: iso(now + range.span), by: range.by});
    // The current windows, from hourly buckets (a day limit needs 24 h).
    recent = range.by === 'hour' && range.since === 86400 && !keyId ? usage
      : await api.get('/accounts/' + api.enc(accountId) + '/usage', {since: iso(now - 86400), until: iso(now + 3600), by: 'hour'});
  } catch (e) {
    if (!api.noUsageStore(e)) throw e;
    if (current()) fill(main, noUsage('Usage'));
    return;
  }
  const limits = await accountLimits(account);
  if (!current()) return;

  const series = buildSeries(usage.buckets || [], since, now, range.span);
  const limit = limits.find(l => l.count !== null && l.window === range.span && l.per !== 'key') || null;
  const counted = limits.filter(l => l.per !== 'key');
  const total = totals(usage);

  const base = '#/usage?' + (params.get('account') ? 'account=' + encodeURIComponent(accountId) + '&' : '');
  const keySel = h('select', {id: 'usage-key', onchange: () => app.go(base + 'range=' + range.id +
    (keySel.value ? '&key=' + encodeURIComponent(keySel.value) : ''))},
  h('option', {value: ''}, 'All keys of the account'),
  keys.map(k => h('option', {value: k.id, selected: k.id === keyId}, (k.name || k.id) + ' (' + String(k.prefix || '').slice(0, 8) + '…)')));
  const keyName = keyId ? (keys.find(k => k.id === keyId) || {}).name || keyId : null;

  fill(main,
    h('h1', {tabindex: '-1'}, 'Usage'),
    h('p', {class: 'lead'}, 'Account ', h('strong', {}, account.name || account.id), ', plan ', account.plan || '?'),
    h('div', {class: 'toolbar'},
      h('div', {class: 'segmented', role: 'group', 'aria-label': 'Period'},
        RANGES.map(r => h('a', {href: base + 'range=' + r.id + (keyId ? '&key=' + encodeURIComponent(keyId) : ''),
          class: 'seg', 'aria-current': r === range ? 'true' : null}, r.title))),
      field('Key', keySel)),
    h('section', {class: 'card', 'aria-labelledby': 'usage-chart-title'},
      h('h2', {id: 'usage-chart-title'}, range.title + (keyName ? ', key “' + keyName + '”' : ', whole account') +
        ', per ' + (range.by === 'day' ? 'day' : 'hour')),
      h('p', {class: 'legend'},
        h('span', {class: 'sw sw-allowed', 'aria-hidden': 'true'}), 'allowed ',
        h('span', {class: 'sw sw-denied', 'aria-hidden': 'true'}), 'denied ',
        limit ? [h('span', {class: 'sw sw-limit', 'aria-hidden': 'true'}), 'the ' + limit.name + ' limit'] : null),
      usageChart(series, limit, range.span,
        `${range.title}: ${fmtNumber(total.allowed)} allowed, ${fmtNumber(total.deniedAll)} denied` +
        (limit ? `; ${limit.name} limit ${fmtNumber(limit.count)}` : '')),
      h('dl', {class: 'totals', id: 'usage-totals'},
        h('div', {}, h('dt', {}, 'Allowed'), h('dd', {id: 'total-allowed'}, fmtNumber(total.allowed))),
        h('div', {}, h('dt', {}, 'Denied'), h('dd', {id: 'total-denied'}, fmtNumber(total.deniedAll))),
        Object.entries(total.denied).map(([code, n]) =>
          h('div', {}, h('dt', {}, h('code', {}, code)), h('dd', {}, fmtNumber(n))))),
      h('details', {},
        h('summary', {}, 'The numbers as a table'),
        table('Requests per bucket', [
          {title: 'From', cell: s => time(s.start.toISOString())},
          {title: 'Allowed', cell: s => fmtNumber(s.allowed)},
          {title: 'Denied', cell: s => fmtNumber(s.denied)},
          {title: 'Denied by code', cell: s => Object.entries(s.codes).map(([c, n]) => c + ' ' + n).join(', ')},
        ], series.filter(s => s.allowed || s.denied), 'No requests in this period.'))),
    h('section', {class: 'card', 'aria-labelledby': 'quota-title'},
      h('h2', {id: 'quota-title'}, 'Remaining quota now'),
      h('p', {class: 'muted'}, 'For the whole account, as of keygated\'s last flush of its counters (every few seconds).'),
      counted.some(l => l.count === null) ? h('p', {class: 'msg info', id: 'no-counts'},
        'The API gives no size for some of the plan\'s limits (their plugin reads no count), so they ' +
        'show no remaining quota unless the account sets them itself.') : null,
      table('Remaining quota of each limit', [
        {title: 'Limit', cell: l => l.name},
        {title: 'Allowed', cell: l => l.count === null ? h('span', {class: 'muted'}, 'not given')
          : l.window ? fmtNumber(l.count) + ' per ' + fmtWindow(l.window) : fmtNumber(l.count) + ' at once'},
        {title: 'Used', cell: l => l.window >= 60
          ? h('span', {class: 'used', 'data-limit': l.name}, fmtNumber(used(recent, l.window, now))) : '—'},
        {title: 'Remaining', cell: l => l.count === null ? '—' : l.window >= 60
          ? h('strong', {class: 'remaining', 'data-limit': l.name}, fmtNumber(Math.max(0, l.count - used(recent, l.window, now))))
          : h('span', {class: 'muted'}, l.window ? 'refills every ' + fmtWindow(l.window) : 'requests in flight')},
        {title: 'Resets', cell: l => l.window >= 60 ? time(new Date((Math.floor(now / l.window) + 1) * l.window * 1000).toISOString()) : '—'},
      ], counted, 'The plan sets no limits.')));
}

function sumDenied(d) {
  return Object.values(d || {}).reduce((a, b) => a + b, 0);
}

function totals(u) {
  const t = u.total || {};
  const denied = {};
  let allowed = t.allowed;
  if (allowed === undefined) {
    allowed = 0;
    for (const b of u.buckets || []) {
      allowed += b.allowed || 0;
      for (const [c, n] of Object.entries(b.denied || {})) denied[c] = (denied[c] || 0) + n;
    }
  } else {
    Object.assign(denied, t.denied || {});
  }
  return {allowed, denied, deniedAll: sumDenied(denied)};
}

// Buckets from `since` to now, one per span, empty ones included.
function buildSeries(buckets, since, now, span) {
  const at = new Map();
  for (const b of buckets) {
    const t = Math.floor(Date.parse(b.start) / 1000);
    const cur = at.get(t) || {allowed: 0, codes: {}};
    cur.allowed += b.allowed || 0;
    for (const [c, n] of Object.entries(b.denied || {})) cur.codes[c] = (cur.codes[c] || 0) + n;
    at.set(t, cur);
  }
  const out = [];
  for (let t = Math.floor(since / span) * span + span; t <= now; t += span) {
    const b = at.get(t) || {allowed: 0, codes: {}};
    out.push({start: new Date(t * 1000), allowed: b.allowed, denied: sumDenied(b.codes), codes: b.codes});
  }
  return out;
}

// Allowed requests in the window that contains now (fixed windows start
// at multiples of their length, as the limiter counts them).
function used(u, window, now) {
  const from = Math.floor(now / window) * window;
  let n = 0;
  for (const b of u.buckets || [])
    if (Date.parse(b.start) / 1000 >= from) n += b.allowed || 0;
  return n;
}
