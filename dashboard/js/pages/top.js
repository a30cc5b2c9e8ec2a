// top.js - operators only: the accounts (or keys) with the most requests.
import {h, fill, table, fmtNumber, noUsage, isoTime} from '../dom.js';
import * as api from '../api.js';

const SINCE = [['24h', 'Last 24 hours', 86400], ['7d', 'Last 7 days', 7 * 86400], ['30d', 'Last 30 days', 30 * 86400]];

export async function render(main, app, params, current) {
  const since = SINCE.find(s => s[0] === params.get('since')) || SINCE[0];
  const by = params.get('by') === 'key' ? 'key' : 'account';
  const now = Date.now();
  let res;
  try {
    res = await api.get('/usage/top', {
      by, limit: 25,
      since: isoTime(now / 1000 - since[2]),
    });
  } catch (e) {
    if (!api.noUsageStore(e)) throw e;
    if (current()) fill(main, noUsage('Top users'));
    return;
  }
  if (!current()) return;
  const link = (s, b) => '#/top?since=' + s + '&by=' + b;
  fill(main, h('h1', {tabindex: '-1'}, 'Top users'),
    h('div', {class: 'toolbar'},
      h('div', {class: 'segmented', role: 'group', 'aria-label': 'Period'},
        SINCE.map(s => h('a', {href: link(s[0], by), class: 'seg', 'aria-current': s === since ? 'true' : null}, s[1]))),
      h('div', {class: 'segmented', role: 'group', 'aria-label': 'Group by'},
        [['account', 'By account'], ['key', 'By key']].map(([b, t]) =>
          h('a', {href: link(since[0], b), class: 'seg', 'aria-current': b === by ? 'true' : null}, t)))),
    table('Top ' + by + 's, ' + since[1].toLowerCase(), [
      {title: 'Account', cell: r => r.account_id
        ? h('a', {href: '#/usage?account=' + encodeURIComponent(r.account_id)}, r.account_id)
        : h('span', {class: 'muted'}, 'no account (requests without a valid key)')},
      by === 'key' ? {title: 'Key', cell: r => r.key_id ? h('code', {}, r.key_id) : h('span', {class: 'muted'}, 'none')} : null,
      {title: 'Allowed', cell: r => fmtNumber(r.allowed)},
      {title: 'Denied', cell: r => fmtNumber(r.denied)},
    ].filter(Boolean), res.items || [], 'No requests in this period.'));
}
