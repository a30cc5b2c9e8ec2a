// main.js - the dashboard's shell: who is signed in, the navigation, and
// which page the address (#/keys, #/usage...) shows.
import {h, fill} from './dom.js';
import * as api from './api.js';
import * as signin from './pages/signin.js';
import * as keys from './pages/keys.js';
import * as usage from './pages/usage.js';
import * as logs from './pages/logs.js';
import * as alerts from './pages/alerts.js';
import * as accounts from './pages/accounts.js';
import * as top from './pages/top.js';
import * as audit from './pages/audit.js';

// Pages in navigation order; operator: only for an operator key (the
// API refuses the rest anyway: the page only says so sooner).
const PAGES = [
  {path: 'keys', title: 'API keys', mod: keys},
  {path: 'usage', title: 'Usage', mod: usage},
  {path: 'logs', title: 'Access logs', mod: logs},
  {path: 'alerts', title: 'Alerts', mod: alerts},
  {path: 'accounts', title: 'Accounts', mod: accounts, operator: true},
  {path: 'top', title: 'Top users', mod: top, operator: true},
  {path: 'audit', title: 'Audit log', mod: audit, operator: true},
];

// What every page is given: who is signed in and helpers.
const app = {
  me: null,
  // The account a page is about: ?account=, else the key's own.  A
  // customer's key asking for another account is refused by the API
  // (404), and the page says so: the page never decides access itself.
  accountId(params) {
    if (params.get('account')) return params.get('account');
    return app.me.account ? app.me.account.id : '';
  },
  isOperator() {
    return app.me && app.me.scope === 'operator';
  },
  go(hash) {
    if (location.hash === hash) route(); else location.hash = hash;
  },
  announce(text) {
    fill(document.getElementById('live'), text);
  },
  signOut,
};

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  return {path: path || 'keys', params: new URLSearchParams(query || '')};
}

function renderWho() {
  const who = document.getElementById('who');
  if (!app.me) { fill(who); return; }
  const a = app.me.account || {};
  fill(who,
    h('span', {class: 'who-text'},
      h('span', {class: 'sr-only'}, 'Signed in to account '),
      h('strong', {id: 'who-account'}, a.name || a.id || '(no account)'),
      ' ',
      h('span', {class: 'badge b-scope', id: 'who-scope'}, app.me.scope)),
    h('button', {type: 'button', id: 'signout', class: 'secondary', onclick: signOut}, 'Sign out'));
}

function renderNav(current) {
  const nav = document.getElementById('nav');
  if (!app.me) { nav.hidden = true; fill(nav); return; }
  nav.hidden = false;
  fill(nav, h('ul', {},
    PAGES.filter(p => !p.operator || app.isOperator()).map(p =>
      h('li', {}, h('a', {href: '#/' + p.path, 'aria-current': p.path === current ? 'page' : null}, p.title)))));
}

let generation = 0;

async function route() {
  const main = document.getElementById('main');
  const {path, params} = parseHash();
  const gen = ++generation;
  if (!app.me) {
    renderNav(null);
    renderWho();
    signin.render(main, app, onSignedIn);
    document.title = 'Sign in - keygate API Keys';
    return;
  }
  const page = PAGES.find(p => p.path === path);
  renderNav(page ? page.path : null);
  if (!page) {
    fill(main, h('h1', {tabindex: '-1'}, 'Not found'), h('p', {}, 'There is no such page.'));
    return;
  }
  document.title = page.title + ' - keygate API Keys';
  if (page.operator && !app.isOperator()) {
    fill(main, h('h1', {tabindex: '-1'}, page.title),
      h('p', {class: 'msg error', id: 'refused'},
        'This page is for operators. Your key manages its own account only.'));
    main.querySelector('h1').focus();
    return;
  }
  fill(main, h('h1', {tabindex: '-1'}, page.title), h('p', {class: 'muted'}, 'Loading…'));
  main.querySelector('h1').focus();
  try {
    await page.mod.render(main, app, params, () => gen === generation);
  } catch (e) {
    if (gen !== generation) return;
    fill(main, h('h1', {tabindex: '-1'}, page.title),
      h('p', {class: 'msg error', role: 'alert', id: 'page-error'}, api.errorText(e)));
  }
  const h1 = main.querySelector('h1');
  if (gen === generation && h1 && !main.contains(document.activeElement)) h1.focus();
}

function onSignedIn(me) {
  app.me = me;
  renderWho();
  app.announce('Signed in.');
  const {path} = parseHash();
  if (!path || path === 'signin') location.hash = '#/keys'; else route();
}

function signOut() {
  api.forgetKey();
  app.me = null;
  location.hash = '#/signin';
  route();
  app.announce('Signed out.');
}

api.setUnauthorizedHandler(() => {
  // The key was revoked or expired under us: forget it.
  if (app.me) signOut();
});

async function start() {
  window.addEventListener('hashchange', route);
  // The skip link moves focus without touching the address (which is
  // the router's: "#main" is no page).
  document.querySelector('.skip').addEventListener('click', (ev) => {
    ev.preventDefault();
    document.getElementById('main').focus();
  });
  if (api.savedKey()) {
    try {
      app.me = await api.get('/me');
    } catch (e) {
      api.forgetKey();
      app.me = null;
    }
  }
  renderWho();
  route();
}

start();
