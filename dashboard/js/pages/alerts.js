// alerts.js - the account's alert rules (as they apply to it: its own
// threshold, a rule it turned off, its own webhook) and its recent alerts
// from the outbox (docs/admin-api.md "Alerts").  A keygated whose policy
// has no alerts: section answers 501: the page says that alerts are not
// configured.
import {h, fill, table, time} from '../dom.js';
import * as api from '../api.js';

// 404 (an older keygated: no such route), 501 (no alerts: section, or no
// usage store for the outbox), 409: not configured, not an error.
const off = e => e instanceof api.ApiError && [404, 501, 409].includes(e.status);

export async function render(main, app, params, current) {
  const accountId = app.accountId(params);
  const base = '/accounts/' + api.enc(accountId) + '/alerts';
  let rules = null, recent = null, why = '', recentWhy = '';
  try {
    rules = await api.get(base + '/rules');
  } catch (e) {
    if (!off(e)) throw e;
    why = e.message;
  }
  if (rules) {
    try {
      recent = await api.get(base, {limit: 50});
    } catch (e) {
      if (!off(e)) throw e;
      recentWhy = e.message;
    }
  }
  if (!current()) return;
  if (!rules) {
    fill(main, h('h1', {tabindex: '-1'}, 'Alerts'),
      h('p', {class: 'msg info', id: 'alerts-off'}, 'Alerts are not configured on this keygated.'),
      h('p', {class: 'muted'}, 'Alert rules (quota thresholds, denial bursts, expiring keys…) are set in the policy; ' +
        'see docs/alerts.md.'), why ? h('p', {class: 'muted'}, 'The service said: ', why) : null);
    return;
  }
  fill(main, h('h1', {tabindex: '-1'}, 'Alerts'),
    h('h2', {}, 'Rules'),
    h('div', {id: 'alert-rules'}, table('Alert rules', [
      {title: 'Rule', cell: r => r.name},
      {title: 'Kind', cell: r => r.kind},
      {title: 'Condition', cell: r => r.condition},
      {title: 'For this account', cell: r => !r.enabled ? 'off' :
        r.threshold !== null ? 'own threshold: ' + r.threshold : 'the rule\'s own'},
      {title: 'Webhook', cell: r => r.webhook_url || 'the notifiers\' own'},
    ], rules.items, 'No rules for this account.')),
    h('h2', {}, 'Recent alerts'),
    recent ? h('div', {id: 'alert-recent'}, table('Recent alerts', [
      {title: 'Time', cell: a => time(a.time)},
      {title: 'Rule', cell: a => a.rule},
      {title: 'Message', cell: a => a.message},
      {title: 'Notifier', cell: a => a.notifier},
      {title: 'State', cell: a => a.state},
      {title: 'Attempts', cell: a => String(a.attempts)},
      {title: 'Last status', cell: a => a.last_status ? String(a.last_status) : '—'},
    ], recent.items, 'No alerts.'))
      : h('p', {class: 'muted', id: 'alert-recent-off'}, 'Recent alerts are not kept: ', recentWhy));
}
