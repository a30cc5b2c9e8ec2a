// admin_client.js - drives keygated's admin API (docs/admin-api.md) as
// its clients do, for tests/keygated/test_admin.sh: every route with an
// operator key and a customer key, every error the issue lists, pages,
// ETag conflicts, the audit trail of create-rotate-revoke, the new key
// at /check and the revoked one refused within the cache's ttl.
//
// The OpenAPI document (docs/openapi.json) is validated by
// @apidevtools/swagger-parser, and every answer's body against the
// schema the document gives its operation and status (ajv, JSON Schema
// 2020-12): an answer with a status the document does not list fails.
//
// Environment: ADMIN, CHECK (base URLs), OPKEY (an operator key), SPEC
// (docs/openapi.json), NODE_CACHE (where npm put the validators), STORE
// (a name for the messages), TTL (the key cache's ttl in seconds),
// USAGE (1 if the policy has a usage store), ALERTS (1 if the policy
// has an alerts: section with the rule `denials`: two insufficient_permissions
// denials within 5m, to a log notifier), READONLY_ADMIN (an admin
// listener whose store cannot write, with READONLY_KEY).
'use strict';
const fs = require('fs');
const { init, call, checkKey, checkUntil, isErr, ok, bad, check, sleep, finish, TTL, STORE } =
  require('./admin_harness.js');
const OP = process.env.OPKEY;

async function main() {
  // ---- the document ---------------------------------------------------------
  await init(process.env.SPEC);
  const served = await call('GET', '/api/v1/openapi.json');
  check(served.status === 200 && served.text === fs.readFileSync(process.env.SPEC, 'utf8'),
        'GET /api/v1/openapi.json serves the document as it is');

  // ---- who may call ------------------------------------------------------------
  let r = await call('GET', '/api/v1/me', { key: OP });
  check(r.status === 200 && r.body.scope === 'operator' && r.body.key.permissions.includes('admin'),
        'me: the operator key, scope operator', r.body);
  r = await call('GET', '/api/v1/me');
  check(r.status === 401 && r.headers.get('www-authenticate'), 'no key: 401 with WWW-Authenticate', r.body);
  r = await call('GET', '/api/v1/me', { key: 'whizo_' + 'a'.repeat(38) });
  check(r.status === 401, 'a malformed key: 401', r.body);
  r = await call('GET', '/api/v1/nosuch', { key: OP, error: true });
  check(isErr(r, 404, 'not_found'), 'an unknown route: 404');
  r = await call('PUT', '/api/v1/accounts', { key: OP, body: {}, error: true });
  check(r.status === 405 && /GET/.test(r.headers.get('allow')) && /POST/.test(r.headers.get('allow')),
        'PUT /accounts: 405 with Allow: GET, POST', r.headers.get('allow'));
  r = await call('GET', '/api/v1/plans', { key: OP });
  check(r.status === 200 && r.body.items.some((p) => p.name === 'admin') &&
        r.body.items.some((p) => p.name === 'enterprise' && p.checks_permissions),
        'plans: the policy\'s, admin and enterprise among them');
  // Each limit's size as the shipped policy (conf/keygate.yaml) sets it:
  // count per window in seconds; a concurrency limit has no window; a
  // token bucket gives its refill rate (issues 19 and 21).
  const sizes = (name) => ((r.body.items.find((p) => p.name === name) || {}).limits || [])
    .map((l) => `${l.name}=${l.count}/${l.window}`).join(' ');
  const shipped = {
    free: 'hour=10/3600 day=100/86400 concurrency=1/null',
    starter: 'hour=50/3600 day=500/86400 concurrency=3/null',
    pro: 'hour=200/3600 day=2000/86400 concurrency=10/null',
    enterprise: 'burst=100/1 hour=100000/3600 day=1000000/86400 concurrency=100/null',
    admin: 'burst=20/1 hour=20000/3600',
  };
  for (const [plan, want] of Object.entries(shipped))
    check(sizes(plan) === want, `plans: ${plan}'s limits with their sizes (${want})`, sizes(plan));

  // ---- accounts: create, and what is refused -------------------------------------
  const tag = Date.now().toString(36);
  r = await call('POST', '/api/v1/accounts', { key: OP, body: {
    name: 'Acme ' + tag, plan: 'enterprise', external_id: 'cus_' + tag,
    permissions: ['scrape:*', 'jobs:read', 'account:manage'], allowed_cidrs: ['127.0.0.0/8', '10.0.0.0/8'],
    metadata: { tier: 'gold' } } });
  check(r.status === 201 && r.body.plan === 'enterprise' && r.headers.get('etag'), 'create an account: 201 with an ETag', r.body);
  const A = r.body;
  r = await call('POST', '/api/v1/accounts', { key: OP, body: { name: 'Beta ' + tag, plan: 'pro' } });
  check(r.status === 201, 'create a second account (pro)', r.body);
  const B = r.body;
  r = await call('POST', '/api/v1/accounts', { key: OP, body: { name: 'Free ' + tag, plan: 'free' } });
  const F = r.body;

  const refused = [
    ['a plan not in the policy', { name: 'x', plan: 'platinum' }, 400, 'invalid_request', 'plan'],
    ['an unknown field', { name: 'x', plan: 'pro', colour: 'red' }, 400, 'invalid_request', 'colour'],
    ['a wrong type', { name: 5, plan: 'pro' }, 400, 'invalid_request', 'name'],
    ['a list of the wrong type', { name: 'x', plan: 'enterprise', permissions: 'a:b' }, 400, 'invalid_request', 'permissions'],
    ['a missing field', { plan: 'pro' }, 400, 'invalid_request', 'name'],
    ['a malformed CIDR', { name: 'x', plan: 'enterprise', allowed_cidrs: ['10.0.0.0/33'] }, 400, 'invalid_request', 'allowed_cidrs'],
    ['a limit of the wrong shape', { name: 'x', plan: 'pro', limits: { hour: { count: 'many' } } }, 400, 'invalid_request', 'limits'],
    ['an external id another account has', { name: 'x', plan: 'pro', external_id: 'cus_' + tag }, 409, 'conflict', undefined],
  ];
  for (const [what, body, st, code, field] of refused) {
    r = await call('POST', '/api/v1/accounts', { key: OP, body });
    check(isErr(r, st, code, field), `create with ${what}: ${st} ${code}${field ? ' field ' + field : ''}`, r.body);
  }
  r = await call('POST', '/api/v1/accounts', { key: OP, raw: '{"name": "x", "plan": ' });
  check(isErr(r, 400, 'invalid_request') && /malformed JSON/.test(r.body.error.message), 'malformed JSON: 400', r.body);
  r = await call('POST', '/api/v1/accounts', { key: OP, raw: '["name"]' });
  check(isErr(r, 400, 'invalid_request'), 'a body that is no object: 400', r.body);
  r = await call('POST', '/api/v1/accounts', { key: OP, raw: '{"name":"a","name":"b","plan":"pro"}' });
  check(isErr(r, 400, 'invalid_request'), 'a field given twice: 400', r.body);
  r = await call('POST', '/api/v1/accounts', { key: OP, raw: JSON.stringify({ name: 'x', plan: 'pro', metadata: { pad: 'x'.repeat(70000) } }) });
  check(isErr(r, 413, 'payload_too_large'), 'a body over 64 KiB: 413', r.status);
  const list0 = await call('GET', '/api/v1/accounts', { key: OP, query: 'limit=500' });
  check(!list0.body.items.some((a) => a.name === 'x'), 'nothing refused was written', list0.body.items.map((a) => a.name));

  // ---- pages and search -------------------------------------------------------------
  for (let i = 0; i < 5; i++)
    await call('POST', '/api/v1/accounts', { key: OP, body: { name: `page ${tag} ${i}`, plan: 'free' } });
  const all = (await call('GET', '/api/v1/accounts', { key: OP, query: 'limit=500' })).body.items.map((a) => a.id);
  let seen = [], cursor = null, pages = 0;
  do {
    r = await call('GET', '/api/v1/accounts', { key: OP, query: 'limit=2' + (cursor ? '&cursor=' + cursor : '') });
    seen = seen.concat(r.body.items.map((a) => a.id));
    cursor = r.body.next_cursor;
    pages++;
  } while (cursor && pages < 100);
  check(JSON.stringify(seen) === JSON.stringify(all) && pages === Math.ceil(all.length / 2),
        `pages of 2 walk all ${all.length} accounts once, in order (${pages} pages)`);
  r = await call('GET', '/api/v1/accounts', { key: OP, query: 'limit=0' });
  check(isErr(r, 400, 'invalid_request', 'limit'), 'limit=0: 400', r.body);
  r = await call('GET', '/api/v1/accounts', { key: OP, query: 'cursor=zz' });
  check(isErr(r, 400, 'invalid_request', 'cursor'), 'a cursor this API did not give: 400', r.body);
  r = await call('GET', '/api/v1/accounts', { key: OP, query: 'search=PAGE%20' + tag });
  check(r.body.items.length === 5, 'search by name (any case): the 5', r.body.items.length);
  r = await call('GET', '/api/v1/accounts', { key: OP, query: 'search=cus_' + tag });
  check(r.body.items.length === 1 && r.body.items[0].id === A.id, 'search by external id', r.body.items);
  r = await call('GET', '/api/v1/accounts/{id}', { key: OP, params: { id: 'cus_' + tag } });
  check(r.status === 200 && r.body.id === A.id, 'get an account by its external id');

  // ---- ETag and If-Match ---------------------------------------------------------------
  r = await call('GET', '/api/v1/accounts/{id}', { key: OP, params: { id: B.id } });
  const etagB = r.headers.get('etag');
  r = await call('PATCH', '/api/v1/accounts/{id}', { key: OP, params: { id: B.id }, headers: { 'If-Match': etagB }, body: { name: 'Beta renamed ' + tag } });
  check(r.status === 200 && r.body.name === 'Beta renamed ' + tag && r.headers.get('etag') !== etagB, 'PATCH with If-Match: 200, a new ETag', r.body);
  r = await call('PATCH', '/api/v1/accounts/{id}', { key: OP, params: { id: B.id }, headers: { 'If-Match': etagB }, body: { name: 'lost update' } });
  check(isErr(r, 412, 'precondition_failed'), 'a second PATCH with the stale ETag: 412', r.body);
  r = await call('GET', '/api/v1/accounts/{id}', { key: OP, params: { id: B.id } });
  check(r.body.name === 'Beta renamed ' + tag, 'the stale write changed nothing');
  r = await call('PATCH', '/api/v1/accounts/{id}', { key: OP, params: { id: B.id }, body: { plan: 'gold' } });
  check(isErr(r, 400, 'invalid_request', 'plan'), 'PATCH to a plan not in the policy: 400 field plan', r.body);
  r = await call('PATCH', '/api/v1/accounts/{id}', { key: OP, params: { id: 'acct_nosuch' }, body: { name: 'x' } });
  check(isErr(r, 404, 'not_found'), 'PATCH of no account: 404');

  // ---- keys of an account -------------------------------------------------------------------
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: A.id }, body: {
    name: 'customer admin', permissions: ['scrape:read', 'account:manage'], allowed_cidrs: ['127.0.0.0/8'] } });
  check(r.status === 201 && /^whizo_/.test(r.body.key) && r.body.record.account === A.id, 'create a key: 201, the key once, its record', r.body && r.body.record);
  const CUST = r.body.key, custId = r.body.record.id;
  r = await call('GET', '/api/v1/keys/{id}', { key: OP, params: { id: custId } });
  check(r.status === 200 && !r.text.includes(CUST) && !/hash/.test(r.text), 'the key is never shown again (nor a hash)');
  check(await checkKey(CUST) === 200, 'the new key works at /check');
  for (const [what, body, field] of [
    ['a permission outside the account\'s ceiling', { name: 'k', permissions: ['crawl:write'] }, 'permissions'],
    ['a network outside the account\'s ceiling', { name: 'k', allowed_cidrs: ['192.168.0.0/16'] }, 'allowed_cidrs'],
    ['an expiry that is no time', { name: 'k', expires: 'soon' }, 'expires'],
    ['an unknown field', { name: 'k', hash: 'x' }, 'hash']]) {
    r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: A.id }, body });
    check(isErr(r, 400, 'invalid_request', field), `a key with ${what}: 400 field ${field}`, r.body);
  }
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: B.id }, body: { name: 'beta key' } });
  const BKEY = r.body.key, bKeyId = r.body.record.id;
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: F.id }, body: { name: 'free key' } });
  const FKEY = r.body.key;

  // ---- the customer's scope -------------------------------------------------------------------
  r = await call('GET', '/api/v1/me', { key: CUST });
  check(r.status === 200 && r.body.scope === 'account' && r.body.account.id === A.id, 'me: the customer key, scope account', r.body);
  r = await call('GET', '/api/v1/accounts', { key: CUST });
  check(r.status === 200 && r.body.items.length === 1 && r.body.items[0].id === A.id, 'a customer lists its own account only');
  r = await call('GET', '/api/v1/accounts', { key: CUST, query: 'search=no-such-name-' + tag });
  check(r.status === 200 && r.body.items.length === 0 && r.body.next_cursor === null, 'a customer\'s list with a search its account misses: empty', r.body);
  for (const [m, t, p, body, what] of [
    ['GET', '/api/v1/accounts/{id}', { id: B.id }, undefined, 'another account'],
    ['GET', '/api/v1/accounts/{id}/keys', { id: B.id }, undefined, 'another account\'s keys'],
    ['POST', '/api/v1/accounts/{id}/keys', { id: B.id }, { name: 'intruder' }, 'a key in another account'],
    ['GET', '/api/v1/keys/{id}', { id: bKeyId }, undefined, 'another account\'s key'],
    ['PATCH', '/api/v1/keys/{id}', { id: bKeyId }, { name: 'x' }, 'a change to another account\'s key'],
    ['POST', '/api/v1/keys/{id}/revoke', { id: bKeyId }, undefined, 'a revoke of another account\'s key'],
    ['POST', '/api/v1/keys/{id}/rotate', { id: bKeyId }, undefined, 'a rotate of another account\'s key'],
    ['GET', '/api/v1/accounts/{id}/usage', { id: B.id }, undefined, 'another account\'s usage'],
    ['GET', '/api/v1/accounts/{id}/events', { id: B.id }, undefined, 'another account\'s events'],
    ['GET', '/api/v1/keys/{id}/usage', { id: bKeyId }, undefined, 'another account\'s key\'s usage']]) {
    r = await call(m, t, { key: CUST, params: p, body });
    check(isErr(r, 404, 'not_found'), `customer: ${what} is 404, not 403`, r.body);
  }
  r = await call('GET', '/api/v1/audit', { key: CUST, query: 'account=' + B.id });
  check(isErr(r, 404, 'not_found'), 'customer: another account\'s audit trail is 404', r.body);
  for (const [m, t, p, body] of [
    ['POST', '/api/v1/accounts', {}, { name: 'x', plan: 'free' }],
    ['PATCH', '/api/v1/accounts/{id}', { id: A.id }, { plan: 'free' }],
    ['POST', '/api/v1/accounts/{id}/suspend', { id: A.id }, undefined],
    ['DELETE', '/api/v1/accounts/{id}', { id: A.id }, undefined],
    ['GET', '/api/v1/usage/top', {}, undefined]]) {
    r = await call(m, t, { key: CUST, params: p, body });
    check(isErr(r, 403, 'forbidden'), `customer: ${m} ${t} is an operator's: 403`, r.body);
  }
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: CUST, params: { id: A.id }, body: { name: 'ci', permissions: ['scrape:read'] } });
  check(r.status === 201 && r.body.record.account === A.id, 'customer: a key of its own account: 201', r.body);
  const ciKeyId = r.body.record.id;
  r = await call('GET', '/api/v1/accounts/{id}/keys', { key: CUST, params: { id: A.id } });
  check(r.status === 200 && r.body.items.length === 2, 'customer: its account\'s keys', r.body.items.length);
  // pages of 1 walk the account's keys once, in the order of a full page,
  // and never hold another account's key (one query a page on SQL stores)
  {
    const allKeys = r.body.items.map((k) => k.id);
    let got = [], cur = null, n = 0;
    do {
      r = await call('GET', '/api/v1/accounts/{id}/keys', { key: CUST, params: { id: A.id }, query: 'limit=1' + (cur ? '&cursor=' + cur : '') });
      got = got.concat(r.body.items.map((k) => k.id));
      cur = r.body.next_cursor;
      n++;
    } while (cur && n < 10);
    check(JSON.stringify(got) === JSON.stringify(allKeys) && n === 2,
          `an account's keys in pages of 1: both, once, in order (${n} pages)`, got);
  }
  r = await call('GET', '/api/v1/me', { key: FKEY });
  check(isErr(r, 403, 'forbidden'), 'a key with neither admin nor account:manage: 403', r.body);
  r = await call('GET', '/api/v1/me', { key: BKEY });
  check(isErr(r, 403, 'forbidden'), 'a pro key without permissions: 403', r.body);
  // account:manage means something on any plan (the admin API checks it);
  // a data permission on a plan without scope would never be enforced
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: B.id }, body: { name: 'beta admin', permissions: ['account:manage'] } });
  check(r.status === 201, 'account:manage on a pro account (no scope line): 201', r.body);
  r = await call('GET', '/api/v1/me', { key: r.body.key });
  check(r.status === 200 && r.body.scope === 'account' && r.body.account.id === B.id, '... and that key is its account\'s customer', r.body);
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: B.id }, body: { name: 'x', permissions: ['scrape:read'] } });
  check(isErr(r, 400, 'invalid_request', 'permissions'), 'a data permission on a pro key (never enforced): 400 field permissions', r.body);
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: B.id }, body: { name: 'x', allowed_cidrs: ['10.0.0.0/8'] } });
  check(r.status === 201, 'networks on a pro key (its plan runs ipacl): 201', r.body);
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: B.id }, body: { name: 'x', permissions: ['*'] } });
  check(isErr(r, 400, 'invalid_request', 'permissions'), 'a wildcard on a pro key: 400 (a wildcard is no admin permission)', r.body);

  // ---- key PATCH, ETag ---------------------------------------------------------------------------
  r = await call('GET', '/api/v1/keys/{id}', { key: CUST, params: { id: ciKeyId } });
  const etagK = r.headers.get('etag');
  await checkKey(CUST);   // a check touches last_used: not a change of the key
  r = await call('PATCH', '/api/v1/keys/{id}', { key: CUST, params: { id: ciKeyId }, headers: { 'If-Match': etagK }, body: { name: 'ci renamed', expires: '30d' } });
  check(r.status === 200 && r.body.name === 'ci renamed' && r.body.expires, 'PATCH a key with If-Match: 200', r.body);
  r = await call('PATCH', '/api/v1/keys/{id}', { key: CUST, params: { id: ciKeyId }, headers: { 'If-Match': etagK }, body: { name: 'stale' } });
  check(isErr(r, 412, 'precondition_failed'), 'PATCH a key with the stale ETag: 412', r.body);
  r = await call('PATCH', '/api/v1/keys/{id}', { key: CUST, params: { id: ciKeyId }, body: { permissions: ['crawl:write'] } });
  check(isErr(r, 400, 'invalid_request', 'permissions'), 'PATCH a key past the ceiling: 400 field permissions', r.body);

  // ---- create, rotate, revoke: the keys at /check and the audit trail -----------------------------
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: A.id }, body: { name: 'rotated', permissions: ['scrape:read'] } });
  const OLD = r.body.key, oldId = r.body.record.id;
  check(await checkKey(OLD) === 200, 'the key to rotate works at /check');
  r = await call('POST', '/api/v1/keys/{id}/rotate', { key: OP, params: { id: oldId }, body: { grace: '1h' } });
  check(r.status === 201 && /^whizo_/.test(r.body.key) && r.body.record.replaces === oldId, 'rotate with a grace: 201, the new key once, linked', r.body && r.body.record);
  const NEW = r.body.key, newId = r.body.record.id;
  check(await checkKey(NEW) === 200, 'the rotated-in key works at /check');
  check(await checkKey(OLD) === 200, 'the old key works for its grace');
  r = await call('GET', '/api/v1/keys/{id}', { key: OP, params: { id: oldId } });
  check(r.body.status === 'rotating' && r.body.replaced_by === newId && r.body.expires, 'the old key: rotating, replaced_by the new', r.body);
  r = await call('POST', '/api/v1/keys/{id}/rotate', { key: OP, params: { id: newId }, body: { grace: 'forever' } });
  check(isErr(r, 400, 'invalid_request', 'grace'), 'rotate with a grace that is no duration: 400', r.body);
  r = await call('POST', '/api/v1/keys/{id}/revoke', { key: OP, params: { id: oldId } });
  check(r.status === 200 && r.body.status === 'revoked', 'revoke: 200, revoked', r.body);
  let w = await checkUntil(OLD, 401);
  check(w.s === 401 && w.ms <= (TTL + 1) * 1000, `the revoked key is refused at /check within the cache ttl (${w.ms} ms, ttl ${TTL} s)`, w);
  check(await checkKey(NEW) === 200, 'the new key still works');
  r = await call('POST', '/api/v1/keys/{id}/revoke', { key: OP, params: { id: 'k_nosuch' } });
  check(isErr(r, 404, 'not_found'), 'revoke of no key: 404');

  r = await call('GET', '/api/v1/audit', { key: OP, query: 'target=' + oldId });
  const trail = r.status === 200 ? r.body.items.map((x) => x.action) : [];
  check(r.status === 200 && JSON.stringify(trail) === JSON.stringify(['key.revoke', 'key.rotate', 'key.create']),
        'the audit trail of the key: create, rotate, revoke (newest first)', r.body);
  if (r.status === 200 && r.body.items.length === 3) {
    const [rev, rot, cre] = r.body.items;
    const opId = (await call('GET', '/api/v1/me', { key: OP })).body.key.id;
    check([rev, rot, cre].every((x) => x.actor === 'key:' + opId && x.actor_key_id === opId && x.client === '127.0.0.1' && x.result === 'ok' && x.account_id === A.id),
          'each record: the operator key as actor, its client address, ok, the account', r.body.items);
    check(rot.changes.replaced_by && rot.changes.replaced_by.after === newId, 'rotate: replaced_by before/after', rot.changes);
    check(rev.changes.status && rev.changes.status.after === 'revoked', 'revoke: status before/after', rev.changes);
    check(!JSON.stringify(r.body).includes(OLD) && !JSON.stringify(r.body).includes(NEW) && !/hash/.test(JSON.stringify(r.body)), 'no key, no hash in the trail');
  }
  r = await call('GET', '/api/v1/audit', { key: OP, query: 'action=account.create&limit=500' });
  check(r.status === 200 && r.body.items.some((x) => x.result === 'invalid_request' && x.changes.plan && x.changes.plan.after === 'platinum'),
        'a refused change is in the trail too (the plan asked for, its result)', r.status);
  r = await call('GET', '/api/v1/audit', { key: OP, query: 'limit=2' });
  const a1 = r.status === 200 ? r.body.items.map((x) => x.id) : [];
  r = await call('GET', '/api/v1/audit', { key: OP, query: 'limit=2&cursor=' + r.body.next_cursor });
  check(r.status === 200 && r.body.items.length === 2 && r.body.items[0].id < a1[1], 'the audit log pages with its cursor', r.body);
  r = await call('GET', '/api/v1/audit', { key: CUST });
  check(r.status === 200 && r.body.items.length > 0 && r.body.items.every((x) => x.account_id === A.id), 'customer: its own account\'s trail only');

  // ---- suspend, resume, delete --------------------------------------------------------------------
  r = await call('POST', '/api/v1/accounts/{id}/suspend', { key: OP, params: { id: B.id } });
  check(r.status === 200 && r.body.status === 'suspended', 'suspend: 200, suspended', r.body);
  w = await checkUntil(BKEY, 403, '/v1/anything');
  check(w.s === 403, `the suspended account's key gets 403 at /check (${w.ms} ms)`, w);
  r = await call('POST', '/api/v1/accounts/{id}/resume', { key: OP, params: { id: B.id } });
  check(r.status === 200 && r.body.status === 'active', 'resume: 200, active', r.body);
  w = await checkUntil(BKEY, 200, '/v1/anything');
  check(w.s === 200, `resumed: the key works again (${w.ms} ms)`, w);
  r = await call('DELETE', '/api/v1/accounts/{id}', { key: OP, params: { id: B.id } });
  check(isErr(r, 409, 'conflict'), 'delete an account with keys: 409', r.body);
  r = await call('DELETE', '/api/v1/accounts/{id}', { key: OP, params: { id: B.id }, query: 'with_keys=true' });
  check(r.status === 204 && r.text === '', 'delete with_keys=true: 204', r.text);
  r = await call('GET', '/api/v1/accounts/{id}', { key: OP, params: { id: B.id } });
  check(isErr(r, 404, 'not_found'), 'the deleted account: 404');
  w = await checkUntil(BKEY, 401, '/v1/anything');
  check(w.s === 401, `the deleted account's key is refused (${w.ms} ms)`, w);

  // ---- usage, events, top ---------------------------------------------------------------------------
  const usageWanted = process.env.USAGE === '1' ? 200 : 501;
  // two denials of A's customer key (a route its permissions lack): events
  check(await checkKey(CUST, '/v1/jobs') === 403 && await checkKey(CUST, '/v1/jobs') === 403,
        'the customer key is refused a route it has no permission for (403, twice)');
  for (const [t, p, q] of [['/api/v1/accounts/{id}/usage', { id: A.id }, 'by=hour&since=7d'],
                           ['/api/v1/keys/{id}/usage', { id: newId }, 'by=minute&since=1h'],
                           ['/api/v1/accounts/{id}/events', { id: A.id }, 'status=4xx&limit=5'],
                           ['/api/v1/usage/top', {}, 'by=key&since=1d']]) {
    r = await call('GET', t, { key: OP, params: p, query: q });
    check(r.status === usageWanted, `GET ${t}: ${usageWanted}`, r.body);
  }
  r = await call('GET', '/api/v1/accounts/{id}/usage', { key: OP, params: { id: A.id }, query: 'by=week' });
  check(isErr(r, 400, 'invalid_request', 'by'), 'usage by=week: 400 field by', r.body);
  r = await call('GET', '/api/v1/accounts/{id}/events', { key: OP, params: { id: A.id }, query: 'code=nonsense' });
  check(isErr(r, 400, 'invalid_request', 'code'), 'events code=nonsense: 400 field code', r.body);
  r = await call('GET', '/api/v1/accounts/{id}/events', { key: OP, params: { id: A.id }, query: 'key=' });
  check(isErr(r, 400, 'invalid_request', 'key'), 'events key= (empty): 400 field key', r.body);
  if (usageWanted === 200) {
    // written by keygated's flush (every flush_interval: 5 s in the shipped
    // policy): wait for the one after the two 403s
    let t0 = Date.now();
    do {
      r = await call('GET', '/api/v1/accounts/{id}/events', { key: OP, params: { id: A.id }, query: 'status=403' });
      if (r.status === 200 && r.body.items.length >= 2) break;
      await sleep(500);
    } while (Date.now() - t0 < 12000);
    t0 = Date.now();
    do {
      r = await call('GET', '/api/v1/keys/{id}/usage', { key: CUST, params: { id: newId }, query: 'by=minute&since=1h' });
      if (r.status === 200 && r.body.total.allowed >= 2) break;
      await sleep(500);
    } while (Date.now() - t0 < 12000);
    check(r.status === 200 && r.body.total.allowed >= 2 && r.body.key === newId && r.body.buckets.length >= 1,
          `customer: its key's usage counts its checks (${r.body && r.body.total && r.body.total.allowed} allowed)`, r.body);
    r = await call('GET', '/api/v1/accounts/{id}/usage', { key: OP, params: { id: A.id }, query: 'by=day&since=2d' });
    check(r.status === 200 && r.body.account === A.id && r.body.total.denied.key_revoked >= 1,
          'the account\'s usage by day: the revoked key\'s denials by code', r.body && r.body.total);
    r = await call('GET', '/api/v1/accounts/{id}/events', { key: CUST, params: { id: A.id }, query: 'status=401' });
    check(r.status === 200 && r.body.items.some((e) => e.key_id === oldId && e.code === 'key_revoked' && e.status === 401),
          'customer: the revoked key\'s 401 is an event', r.body);
    check(!r.text.includes(OLD), 'events never hold a key');
    r = await call('GET', '/api/v1/accounts/{id}/events', { key: OP, params: { id: A.id }, query: 'status=403&code=insufficient_permissions' });
    check(r.status === 200 && r.body.items.length >= 2 && r.body.items.every((e) => e.status === 403 && e.key_id === custId && e.path === '/v1/jobs'),
          'events by status and code: the two 403s', r.body);
    // ?key=: that key's events only, within the account (issue 19)
    r = await call('GET', '/api/v1/accounts/{id}/events', { key: CUST, params: { id: A.id }, query: 'key=' + encodeURIComponent(oldId) });
    check(r.status === 200 && r.body.items.some((e) => e.code === 'key_revoked') && r.body.items.every((e) => e.key_id === oldId),
          'events ?key=: the revoked key\'s only', r.body);
    r = await call('GET', '/api/v1/accounts/{id}/events', { key: OP, params: { id: A.id }, query: 'key=' + custId + '&status=403' });
    check(r.status === 200 && r.body.items.length >= 2 && r.body.items.every((e) => e.key_id === custId),
          'events ?key= with status: the customer key\'s 403s', r.body);
    // B's key was refused at /check while B was suspended (an event of
    // account B, flushed before the two 403s awaited above); asked under
    // account A it finds nothing, from either scope: no other account's
    // event, and no way to tell its key from none
    for (const k of [OP, CUST]) {
      r = await call('GET', '/api/v1/accounts/{id}/events', { key: k, params: { id: A.id }, query: 'key=' + bKeyId });
      check(r.status === 200 && r.body.items.length === 0 && r.body.next_cursor === null,
            `events ?key= of another account's key: an empty page (${k === OP ? 'operator' : 'customer'})`, r.body);
    }
    r = await call('GET', '/api/v1/accounts/{id}/events', { key: CUST, params: { id: A.id }, query: 'key=k_nosuch' });
    check(r.status === 200 && r.body.items.length === 0, 'events ?key= of no key: an empty page', r.body);
    r = await call('GET', '/api/v1/accounts/{id}/events', { key: OP, params: { id: A.id }, query: 'limit=1' });
    if (r.status === 200 && r.body.next_cursor) {
      const first = r.body.items[0].id;
      r = await call('GET', '/api/v1/accounts/{id}/events', { key: OP, params: { id: A.id }, query: 'limit=1&cursor=' + r.body.next_cursor });
      check(r.status === 200 && r.body.items.length === 1 && r.body.items[0].id < first, 'events page with their cursor (older next)', r.body);
    } else bad('events: a second event to page to', r.body);
    r = await call('GET', '/api/v1/usage/top', { key: OP, query: 'by=account&since=1d&limit=50' });
    check(r.status === 200 && r.body.items.some((x) => x.account_id === A.id), 'usage top: account A among the heaviest', r.body);
  }

  // ---- alerts (docs/alerts.md): the rules as they apply to the account, its recent alerts ----------
  if (process.env.ALERTS === '1') {
    r = await call('GET', '/api/v1/accounts/{id}/alerts/rules', { key: CUST, params: { id: A.id } });
    const den = r.status === 200 ? r.body.items.find((x) => x.name === 'denials') : undefined;
    check(r.status === 200 && r.body.account_id === A.id && den && den.kind === 'denied' && den.enabled === true &&
          den.threshold === null && /2/.test(den.condition),
          'customer: its account\'s alert rules (denials: kind denied, the rule\'s own threshold)', r.body);
    // the two 403s above fire `denials` once keygated's alerts thread has
    // read their minute's usage rows: after the minute ends, the flush
    // (flush_interval) and a margin (tools/keygated_alerts.c), so up to
    // about 70 s after them
    let t0 = Date.now();
    do {
      r = await call('GET', '/api/v1/accounts/{id}/alerts', { key: CUST, params: { id: A.id } });
      if (r.status === 200 && r.body.items.some((x) => x.rule === 'denials' && x.state === 'delivered')) break;
      await sleep(1000);
    } while (Date.now() - t0 < 90000);
    const al = r.status === 200 ? r.body.items.find((x) => x.rule === 'denials') : undefined;
    check(al && al.state === 'delivered' && al.attempts >= 1 && al.notifier === 'log' && al.type === 'alert.fired' &&
          al.message.includes(A.id) && Date.parse(al.time) > Date.now() - 600000,
          'customer: the denials alert, delivered to the log notifier, with its message', r.body);
    // the account's own settings (keygate alerts override: the CLI's
    // KEYGATE_BIN on the same policy and store, KG_POLICY)
    const { execFileSync } = require('child_process');
    const kg = (...a) => execFileSync(process.env.KEYGATE_BIN, ['--config', process.env.KG_POLICY, 'alerts', 'override', ...a]);
    kg(A.id, 'denials', '--threshold', '5');
    kg(A.id, 'quota-80', '--off');
    r = await call('GET', '/api/v1/accounts/{id}/alerts/rules', { key: CUST, params: { id: A.id } });
    const byName = r.status === 200 ? Object.fromEntries(r.body.items.map((x) => [x.name, x])) : {};
    check(byName.denials && byName.denials.threshold === 5 && byName.denials.enabled === true &&
          byName['quota-80'] && byName['quota-80'].enabled === false && byName['quota-80'].threshold === null,
          'customer: its own settings in its rules (denials threshold 5, quota-80 off)', r.body);
    r = await call('GET', '/api/v1/me', { key: OP });
    const opAcct = r.body.account && r.body.account.id;
    if (opAcct) {
      r = await call('GET', '/api/v1/accounts/{id}/alerts', { key: OP, params: { id: opAcct } });
      check(r.status === 200 && r.body.items.every((x) => x.rule !== 'denials'), 'the operator\'s own account has none of A\'s alerts', r.body);
      r = await call('GET', '/api/v1/accounts/{id}/alerts/rules', { key: OP, params: { id: opAcct } });
      check(r.status === 200 && r.body.items.every((x) => x.threshold === null && x.enabled), '... nor A\'s settings', r.body);
    }
    r = await call('GET', '/api/v1/accounts/{id}/alerts', { key: OP, params: { id: A.id }, query: 'limit=0' });
    check(isErr(r, 400, 'invalid_request', 'limit'), 'alerts limit=0: 400 field limit', r.body);
  } else {
    r = await call('GET', '/api/v1/accounts/{id}/alerts/rules', { key: OP, params: { id: A.id } });
    check(isErr(r, 501, 'not_implemented'), 'no alerts: section: the rules are 501 not_implemented', r.body);
    r = await call('GET', '/api/v1/accounts/{id}/alerts', { key: CUST, params: { id: A.id } });
    check(isErr(r, 501, 'not_implemented'), 'no alerts: section: the recent alerts are 501', r.body);
    r = await call('PUT', '/api/v1/accounts/{id}/alerts/overrides', { key: CUST, params: { id: A.id }, body: { rules: {} } });
    check(isErr(r, 501, 'not_implemented'), 'no alerts: section: the account\'s alert settings are 501', r.body);
  }
  for (const t of ['/api/v1/accounts/{id}/alerts/rules', '/api/v1/accounts/{id}/alerts']) {
    r = await call('GET', t, { key: CUST, params: { id: B.id } });
    check(isErr(r, 404, 'not_found') && r.body.error.message === 'no such account',
          `customer: another account's ${t.split('/').slice(-1)[0]} is 404 no such account, not 403`, r.body);
  }

  // ---- the caller's rate limits apply ---------------------------------------------------------------------
  r = await call('POST', '/api/v1/accounts', { key: OP, body: { name: 'limited ' + tag, plan: 'enterprise',
    permissions: ['account:manage'], limits: { burst: { count: 1, window: 60, burst: 3 } } } });
  r = await call('POST', '/api/v1/accounts/{id}/keys', { key: OP, params: { id: r.body.id }, body: { name: 'lim', permissions: ['account:manage'] } });
  const LIM = r.body.key;
  const codes = [];
  for (let i = 0; i < 5; i++) codes.push((await call('GET', '/api/v1/me', { key: LIM })).status);
  r = await call('GET', '/api/v1/me', { key: LIM });
  check(codes.slice(0, 3).every((c) => c === 200) && r.status === 429 && r.headers.get('retry-after'),
        'the calling key\'s limits apply: 429 with Retry-After past its burst', codes.concat([r.status]));

  // ---- a store that cannot write --------------------------------------------------------------------------
  if (process.env.READONLY_ADMIN) {
    const o = { base: process.env.READONLY_ADMIN, key: process.env.READONLY_KEY };
    r = await call('POST', '/api/v1/accounts', Object.assign({ body: { name: 'ro', plan: 'free' } }, o));
    check(isErr(r, 409, 'read_only') && r.body.error.message.length > 10, 'a read-only store: 409 read_only with a message', r.body);
    r = await call('GET', '/api/v1/me', o);
    r = await call('POST', '/api/v1/keys/{id}/revoke', Object.assign({ params: { id: r.body.key.id } }, o));
    check(isErr(r, 409, 'read_only'), 'a revoke in a read-only store: 409', r.body);
    r = await call('GET', '/api/v1/me', o);
    check(r.status === 200 && r.body.key.status === 'active', 'nothing was written', r.body && r.body.key);
  }

  finish();
}
main().catch((e) => { console.log('FAIL - ' + STORE + ': ' + (e.stack || e)); process.exit(1); });
