// admin_alerts_client.js - an account's own alert settings through the
// admin API (docs/admin-api.md "Alerts", docs/alerts.md "Per-account
// rules"), for tests/keygated/test_admin_alerts.sh: both scopes, bad
// input, ETags, the generated secret answered once and never again, the
// audit trail.  Every answer is validated against docs/openapi.json
// (admin_harness.js).
//
// PHASE=strict: keygated as shipped (a customer key gets https:// to a
// public address only).  PHASE=insecure: keygated with
// --admin-webhook-insecure: the customer points its receiver at the
// test's receiver (RECEIVER, http on loopback), rotates its secret,
// and spends its day's checks until its own quota-80 (at its own 50%)
// goes out.  STATE: a JSON file the phases share (the accounts and
// keys, the secrets, for the shell to verify the webhook with).
'use strict';
const fs = require('fs');
const { init, call, checkKey, isErr, ok, bad, check, sleep, finish } = require('./admin_harness.js');

const OP = process.env.OPKEY, STATE = process.env.STATE, PHASE = process.env.PHASE;
const OV = '/api/v1/accounts/{id}/alerts/overrides';
const SECRET = '/api/v1/accounts/{id}/alerts/overrides/secret';
const WHSEC = /^whsec_[A-Za-z0-9+/]{43}=$/;

async function strict() {
  const tag = Date.now().toString(36);
  let r = await call('POST', '/api/v1/accounts', { key: OP, body: {
    name: 'Own alerts ' + tag, plan: 'enterprise', permissions: ['scrape:*', 'account:manage'],
    limits: { day: { count: 200, window: 86400 } } } });
  const A = r.body.id;
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: A }, body: {
    name: 'customer admin', permissions: ['scrape:read', 'account:manage'] } });
  const CUST = r.body.key;
  r = await call('POST', '/api/v1/accounts', { key: OP, body: { name: 'Other ' + tag, plan: 'pro' } });
  const B = r.body.id;
  check(A && CUST && B, 'an enterprise account with a customer key, and another account', r.body);

  r = await call('GET', OV, { key: CUST, params: { id: A } });
  check(r.status === 200 && r.body.account_id === A && Object.keys(r.body.rules).length === 0 &&
        r.body.webhook_url === null && r.body.secret_source === null && r.headers.get('etag'),
        'customer: its account\'s settings, none yet, with an ETag', r.body);

  // another account's: 404 as for one that does not exist
  for (const [m, t, body] of [['GET', OV], ['PUT', OV, { rules: { 'quota-80': 90 } }], ['DELETE', OV], ['POST', SECRET]]) {
    r = await call(m, t, { key: CUST, params: { id: B }, body });
    check(isErr(r, 404, 'not_found') && r.body.error.message === 'no such account',
          `customer: ${m} of another account's settings is 404 no such account`, r.body);
  }

  // bad input: 400 naming the field, nothing written
  const refused = [
    ['a quota over 100', { rules: { 'quota-80': 150 } }, 'rules'],
    ['a quota of 0', { rules: { 'quota-80': 0 } }, 'rules'],
    ['a spike factor of 1', { rules: { spike: 1 } }, 'rules'],
    ['a denial count of 2.5', { rules: { denials: 2.5 } }, 'rules'],
    ['a figure for new_client_network', { rules: { 'new-ip': 3 } }, 'rules'],
    ['a rule the policy lacks', { rules: { nosuch: 50 } }, 'rules'],
    ['a figure that is no number', { rules: { 'quota-80': '90' } }, 'rules'],
    ['rules that are no object', { rules: [90] }, 'rules'],
    ['a secret file (never through the API)', { webhook_url: 'https://hooks.example.com/k', secret_file: '/etc/passwd' }, 'secret_file'],
    ['an unknown field', { colour: 'red' }, 'colour'],
    ['an http:// URL', { webhook_url: 'http://hooks.example.com/k' }, 'webhook_url'],
    ['a loopback address', { webhook_url: 'https://127.0.0.1:8443/k' }, 'webhook_url'],
    ['a loopback address as a number', { webhook_url: 'https://2130706433/k' }, 'webhook_url'],
    ['a private address', { webhook_url: 'https://10.1.2.3/k' }, 'webhook_url'],
    ['a link-local address (cloud metadata)', { webhook_url: 'https://169.254.169.254/latest' }, 'webhook_url'],
    ['IPv6 loopback', { webhook_url: 'https://[::1]/k' }, 'webhook_url'],
    ['IPv4-mapped loopback', { webhook_url: 'https://[::ffff:127.0.0.1]/k' }, 'webhook_url'],
    ['localhost', { webhook_url: 'https://localhost/k' }, 'webhook_url'],
    ['an ftp:// URL', { webhook_url: 'ftp://hooks.example.com/k' }, 'webhook_url'],
    ['a user and password', { webhook_url: 'https://u:p@hooks.example.com/k' }, 'webhook_url'],
    ['no URL at all', { webhook_url: 'hooks.example.com' }, 'webhook_url'],
    ['a space', { webhook_url: 'https://hooks.example.com/a b' }, 'webhook_url'],
  ];
  for (const [what, body, field] of refused) {
    r = await call('PUT', OV, { key: CUST, params: { id: A }, body });
    check(isErr(r, 400, 'invalid_request', field), `customer PUT with ${what}: 400 field ${field}`, r.body);
  }
  r = await call('GET', OV, { key: CUST, params: { id: A } });
  const etag0 = r.headers.get('etag');
  check(Object.keys(r.body.rules).length === 0 && r.body.webhook_url === null, 'nothing refused was written', r.body);

  // a public https URL: the secret is generated and answered once
  r = await call('PUT', OV, { key: CUST, params: { id: A }, headers: { 'If-Match': etag0 }, body: {
    rules: { 'quota-80': 90, spike: -1 }, webhook_url: 'https://hooks.example.com/keygate' } });
  const S1 = r.body && r.body.signing_secret;
  check(r.status === 200 && WHSEC.test(S1 || '') && r.body.rules['quota-80'] === 90 && r.body.rules.spike === -1 &&
        r.body.webhook_url === 'https://hooks.example.com/keygate' && r.body.secret_source === 'generated',
        'customer PUT: 200, its figures, its URL, a generated whsec_ secret (32 bytes)', r.body);
  const etag1 = r.headers.get('etag');
  r = await call('GET', OV, { key: CUST, params: { id: A } });
  check(r.status === 200 && !('signing_secret' in r.body) && !r.text.includes(S1) && !r.text.includes('alert-secrets') &&
        r.headers.get('etag') === etag1 && r.body.secret_source === 'generated',
        'GET never shows the secret (nor its file); same ETag as the PUT answered', r.body);
  r = await call('PUT', OV, { key: CUST, params: { id: A }, headers: { 'If-Match': etag0 }, body: { rules: { 'quota-80': 10 } } });
  check(isErr(r, 412, 'precondition_failed'), 'a PUT with a stale If-Match: 412', r.body);
  r = await call('PUT', OV, { key: CUST, params: { id: A }, body: {
    rules: { 'quota-80': 95, denials: 7 }, webhook_url: 'https://hooks.example.com/keygate' } });
  check(r.status === 200 && !('signing_secret' in r.body) && r.body.rules['quota-80'] === 95 &&
        r.body.rules.denials === 7 && !('spike' in r.body.rules),
        'the same URL again: new figures (the PUT replaces them all), no new secret', r.body);
  r = await call('GET', '/api/v1/accounts/{id}/alerts/rules', { key: CUST, params: { id: A } });
  const rule = (n) => (r.body.items || []).find((x) => x.name === n) || {};
  check(r.status === 200 && rule('quota-80').threshold === 95 && rule('denials').threshold === 7 &&
        rule('spike').enabled === true && rule('quota-80').webhook_url === 'https://hooks.example.com/keygate',
        'the rules route shows them', r.body);

  // the operator: any account, http:// and loopback too
  r = await call('GET', OV, { key: OP, params: { id: A } });
  check(r.status === 200 && r.body.rules.denials === 7, 'operator: reads the customer\'s settings', r.body);
  r = await call('PUT', OV, { key: OP, params: { id: B }, body: { rules: { 'quota-80': 60 }, webhook_url: 'http://127.0.0.1:9/b' } });
  check(r.status === 200 && WHSEC.test(r.body.signing_secret || '') && r.body.signing_secret !== S1 &&
        r.body.webhook_url === 'http://127.0.0.1:9/b', 'operator PUT on another account with http:// on loopback: 200, its own secret', r.body);
  r = await call('PUT', OV, { key: OP, params: { id: B }, body: { webhook_url: 'ftp://x/' } });
  check(isErr(r, 400, 'invalid_request', 'webhook_url'), 'operator: ftp:// is still a 400', r.body);
  r = await call('DELETE', OV, { key: OP, params: { id: B } });
  check(r.status === 204, 'operator DELETE: 204', r.status);
  r = await call('GET', OV, { key: OP, params: { id: B } });
  check(r.status === 200 && Object.keys(r.body.rules).length === 0 && r.body.webhook_url === null, '... and the settings are gone', r.body);

  // DELETE with a stale ETag, then for real
  r = await call('DELETE', OV, { key: CUST, params: { id: A }, headers: { 'If-Match': etag1 } });
  check(isErr(r, 412, 'precondition_failed'), 'customer DELETE with a stale If-Match: 412', r.body);
  r = await call('DELETE', OV, { key: CUST, params: { id: A } });
  check(r.status === 204, 'customer DELETE: 204', r.status);
  r = await call('GET', OV, { key: CUST, params: { id: A } });
  check(r.status === 200 && Object.keys(r.body.rules).length === 0 && r.body.webhook_url === null, '... its settings are gone', r.body);
  // http:// from a customer is refused by this keygated, taken by the next
  r = await call('PUT', OV, { key: CUST, params: { id: A }, body: { webhook_url: process.env.RECEIVER } });
  check(isErr(r, 400, 'invalid_request', 'webhook_url'), 'customer: the test\'s http:// receiver on loopback is refused here', r.body);
  fs.writeFileSync(STATE, JSON.stringify({ A, B, CUST, S1 }));
}

async function insecure() {
  const { A, CUST, S1 } = JSON.parse(fs.readFileSync(STATE, 'utf8'));
  let r = await call('PUT', OV, { key: CUST, params: { id: A }, body: {
    rules: { 'quota-80': 50 }, webhook_url: process.env.RECEIVER } });
  check(r.status === 200 && !('signing_secret' in r.body) && r.body.secret_source === 'generated' &&
        r.body.webhook_url === process.env.RECEIVER,
        'with --admin-webhook-insecure: the customer\'s http:// receiver; the secret made before is kept (not answered again)', r.body);
  r = await call('POST', SECRET, { key: CUST, params: { id: A }, body: { secret_file: '/etc/passwd' } });
  check(isErr(r, 400, 'invalid_request', 'secret_file'), 'the rotate route takes no fields (no file)', r.body);
  r = await call('POST', SECRET, { key: CUST, params: { id: A } });
  const S2 = r.body && r.body.signing_secret;
  check(r.status === 200 && WHSEC.test(S2 || '') && S2 !== S1 && r.body.secret_source === 'generated',
        'rotate: a new secret, once', r.body);
  r = await call('GET', OV, { key: CUST, params: { id: A } });
  check(r.status === 200 && !r.text.includes(S2), 'GET does not show it', r.body);

  // spend the day: 200, its own 50% at 100 checks (the admin calls count too)
  let n = 0;
  const own = () => fs.readdirSync(process.env.RECEIVER_DIR).filter((f) => f.endsWith('.path') &&
    fs.readFileSync(process.env.RECEIVER_DIR + '/' + f, 'utf8').startsWith('/own'));
  while (n < 120 && own().length === 0) {
    const s = await checkKey(CUST);
    if (s !== 200) { bad(`check ${n}: ${s}`); break; }
    n++;
    if (n >= 90) await sleep(300);
  }
  const t0 = Date.now();
  while (own().length === 0 && Date.now() - t0 < 20000) await sleep(250);
  const got = own();
  check(got.length >= 1, `the account's own quota-80 webhook arrived at its receiver (${n} checks)`, got);
  const body = got.length ? fs.readFileSync(process.env.RECEIVER_DIR + '/' + got[0].replace('.path', '.body'), 'utf8') : '';
  check(body.includes(`"account":"${A}"`) && body.includes('"rule":"quota-80"') && body.includes('"threshold":50'),
        'its payload: the account, quota-80 at its own 50%', body);

  // the audit trail: every change by the customer key, no secret anywhere
  r = await call('GET', '/api/v1/audit', { key: OP, query: 'target=' + A + '&limit=100' });
  const acts = r.status === 200 ? r.body.items.map((x) => `${x.action}:${x.result}`) : [];
  const me = (await call('GET', '/api/v1/me', { key: CUST })).body.key.id;
  check(acts.includes('alerts.overrides.update:ok') && acts.includes('alerts.overrides.update:invalid_request') &&
        acts.includes('alerts.overrides.update:precondition_failed') && acts.includes('alerts.overrides.delete:ok') &&
        acts.includes('alerts.overrides.delete:precondition_failed') && acts.includes('alerts.secret.rotate:ok'),
        'the audit trail: updates, refusals (invalid_request, precondition_failed), delete, rotate', acts);
  const up = r.status === 200 ? r.body.items.find((x) => x.action === 'alerts.overrides.update' && x.result === 'ok' &&
    x.changes.webhook_url && x.changes.webhook_url.after === process.env.RECEIVER) : undefined;
  check(up && up.actor === 'key:' + me && up.account_id === A && up.changes.rules.after['quota-80'] === 50,
        'an update\'s record: the customer key, the account, the URL and figures before and after', up);
  r = await call('GET', '/api/v1/audit', { key: OP, query: 'limit=500' });
  check(r.status === 200 && !/whsec_/.test(r.text) && !r.text.includes(S1) && !r.text.includes(S2),
        'no secret in the audit log', r.status);
  fs.writeFileSync(STATE, JSON.stringify({ A, CUST, S1, S2 }));
}

async function main() {
  await init(process.env.SPEC);
  await (PHASE === 'strict' ? strict() : insecure());
  finish();
}
main().catch((e) => { bad(e.stack || String(e)); finish(); });
