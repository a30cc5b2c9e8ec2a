// accounts.js - operators only: find accounts by name or external id,
// create one, change its plan (If-Match: a concurrent change is
// refused, not overwritten), suspend and resume.
import {h, fill, field, table, time, badge, status} from '../dom.js';
import * as api from '../api.js';
import {plans} from '../plans.js';
import {confirmDialog} from './dialog.js';

export async function render(main, app, params, current) {
  const q = params.get('q') || '';
  const planNames = (await plans().catch(() => [])).map(p => p.name);
  const first = await api.get('/accounts', {q, limit: 50});
  if (!current()) return;

  const search = h('input', {type: 'search', id: 'accounts-q', value: q, autocomplete: 'off'});
  const msg = h('div', {id: 'accounts-msg', 'aria-live': 'polite'});
  const slot = h('div', {id: 'accounts-list'});
  const formSlot = h('div', {});
  const createBtn = h('button', {type: 'button', id: 'create-account', 'aria-expanded': 'false', onclick: toggleCreate},
    'Create account');
  let rows = [], cursor = first.next_cursor;
  const more = h('button', {type: 'button', class: 'secondary', id: 'accounts-more', onclick: loadMore}, 'More accounts');

  fill(main, h('h1', {tabindex: '-1'}, 'Accounts'),
    h('form', {class: 'toolbar', role: 'search', onsubmit: ev => {
      ev.preventDefault();
      app.go('#/accounts' + (search.value.trim() ? '?q=' + encodeURIComponent(search.value.trim()) : ''));
    }}, field('Name or external id', search), h('button', {type: 'submit', id: 'accounts-search'}, 'Search')),
    createBtn, formSlot, msg, slot);
  draw(first.items || []);

  function draw(items) {
    rows.push(...items);
    fill(slot, table('Accounts', [
      {title: 'Name', cell: a => h('a', {href: '#/keys?account=' + encodeURIComponent(a.id), class: 'account-link'},
        a.name || a.id)},
      {title: 'Id', cell: a => h('code', {}, a.id)},
      {title: 'External id', cell: a => a.external_id || h('span', {class: 'muted'}, '—')},
      {title: 'Plan', cell: a => planCell(a)},
      {title: 'Status', cell: a => badge(a.status)},
      {title: 'Created', cell: a => time(a.created)},
      {title: 'Actions', cell: a => h('div', {class: 'actions'},
        h('a', {href: '#/usage?account=' + encodeURIComponent(a.id), class: 'button-link secondary'}, 'Usage'),
        h('a', {href: '#/audit?account=' + encodeURIComponent(a.id), class: 'button-link secondary'}, 'Audit'),
        a.status === 'suspended'
          ? h('button', {type: 'button', class: 'secondary', 'aria-label': 'Resume ' + (a.name || a.id),
            'data-action': 'resume', 'data-account': a.id,
            onclick: () => act(a, 'resume')}, 'Resume')
          : h('button', {type: 'button', class: 'danger', 'aria-label': 'Suspend ' + (a.name || a.id),
            'data-action': 'suspend', 'data-account': a.id,
            onclick: () => act(a, 'suspend')}, 'Suspend'))},
    ], rows, q ? 'No account matches.' : 'No accounts yet.'), cursor ? more : null);
  }

  function planCell(a) {
    const sel = h('select', {'aria-label': 'Plan of ' + (a.name || a.id), class: 'plan-select', 'data-account': a.id},
      (planNames.includes(a.plan) ? planNames : [a.plan, ...planNames]).map(p => h('option', {value: p, selected: p === a.plan}, p)));
    const save = h('button', {type: 'button', class: 'secondary', 'aria-label': 'Save the plan of ' + (a.name || a.id),
      'data-action': 'plan', 'data-account': a.id,
      onclick: async () => {
        try {
          // Refused if the account changed since this page showed it;
          // If-Match covers the moment between this read and the write.
          const cur = await api.call('GET', '/accounts/' + api.enc(a.id));
          if (cur.data.plan !== a.plan || cur.data.status !== a.status) {
            status(msg, '“' + (a.name || a.id) + '” was changed meanwhile (plan ' + cur.data.plan + ', ' +
              cur.data.status + '): search again before changing it.', 'error');
            return;
          }
          const res = await api.call('PATCH', '/accounts/' + api.enc(a.id), {body: {plan: sel.value}, etag: cur.etag});
          Object.assign(a, res.data || {plan: sel.value});
          status(msg, 'Plan of “' + (a.name || a.id) + '” is now ' + a.plan + '.', 'ok');
        } catch (e) {
          status(msg, api.errorText(e), 'error');
        }
      }}, 'Save');
    return h('div', {class: 'inline'}, sel, save);
  }

  async function act(a, what) {
    if (what === 'suspend' && !await confirmDialog({title: 'Suspend account',
      text: ['Suspend “', a.name || a.id, '”? Every key of the account is refused until it is resumed.'],
      confirm: 'Suspend', danger: true})) return;
    try {
      const res = await api.post('/accounts/' + api.enc(a.id) + '/' + what, {});
      Object.assign(a, res || {status: what === 'suspend' ? 'suspended' : 'active'});
      status(msg, '“' + (a.name || a.id) + '” is ' + a.status + '.', 'ok');
      const again = rows.slice();
      rows = [];
      draw(again);
    } catch (e) {
      status(msg, api.errorText(e), 'error');
    }
  }

  async function loadMore() {
    const page = await api.get('/accounts', {q, limit: 50, cursor});
    cursor = page.next_cursor;
    draw(page.items || []);
    more.focus();
  }

  function toggleCreate() {
    const open = formSlot.childElementCount === 0;
    createBtn.setAttribute('aria-expanded', String(open));
    if (!open) { fill(formSlot); return; }
    const name = h('input', {type: 'text', id: 'account-name', required: true, autocomplete: 'off'});
    const ext = h('input', {type: 'text', id: 'account-external', autocomplete: 'off'});
    const plan = h('select', {id: 'account-plan'}, planNames.map(p => h('option', {value: p}, p)));
    const fmsg = h('div', {role: 'alert'});
    fill(formSlot, h('form', {class: 'card', id: 'account-form', novalidate: true, onsubmit: async ev => {
      ev.preventDefault();
      if (!name.value.trim()) { name.setAttribute('aria-invalid', 'true'); status(fmsg, 'Give the account a name.', 'error'); name.focus(); return; }
      const body = {name: name.value.trim(), plan: plan.value};
      if (ext.value.trim()) body.external_id = ext.value.trim();
      try {
        const a = await api.post('/accounts', body);
        fill(formSlot);
        createBtn.setAttribute('aria-expanded', 'false');
        status(msg, 'Created “' + (a.name || a.id) + '” (' + a.id + ').', 'ok');
        rows.unshift(a);
        const again = rows.slice();
        rows = [];
        draw(again);
      } catch (e) {
        status(fmsg, api.errorText(e), 'error');
      }
    }},
    h('h2', {}, 'Create account'), field('Name', name), field('External id (optional)', ext,
      'Your own id for the customer, e.g. from your billing system.'), field('Plan', plan),
    h('div', {class: 'buttons'}, h('button', {type: 'submit'}, 'Create account'),
      h('button', {type: 'button', class: 'secondary', onclick: toggleCreate}, 'Cancel')), fmsg));
    name.focus();
  }
}
