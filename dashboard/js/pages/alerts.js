// alerts.js - the account's alert rules and recent alerts, when
// keygated has alerts (the alerts API answers); until then the page says
// that alerts are not configured.
import {h, fill, table, time} from '../dom.js';
import * as api from '../api.js';

export async function render(main, app, params, current) {
  const accountId = app.accountId(params);
  let rules = null, recent = null, why = '';
  try {
    rules = await api.get('/accounts/' + api.enc(accountId) + '/alerts/rules');
    recent = await api.get('/accounts/' + api.enc(accountId) + '/alerts', {limit: 50});
  } catch (e) {
    // No such route (404 with no error code of ours, or "not_found" for
    // the route), or the service says it has no alerting: not configured.
    if (!(e instanceof api.ApiError) || ![404, 501, 409].includes(e.status)) throw e;
    why = e.message;
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
    table('Alert rules', [
      {title: 'Rule', cell: r => r.name || r.id || ''},
      {title: 'Kind', cell: r => r.kind || r.type || ''},
      {title: 'Condition', cell: r => r.condition || r.description || JSON.stringify(r.options || {})},
      {title: 'Notifies', cell: r => (r.notify || r.notifiers || []).join ? (r.notify || r.notifiers || []).join(', ') : String(r.notify || '')},
    ], rules.items || [], 'No rules for this account.'),
    h('h2', {}, 'Recent alerts'),
    table('Recent alerts', [
      {title: 'Time', cell: a => time(a.time)},
      {title: 'Rule', cell: a => a.rule || ''},
      {title: 'Message', cell: a => a.message || ''},
      {title: 'Delivered', cell: a => a.status || a.delivery || ''},
    ], recent.items || [], 'No alerts.'));
}
