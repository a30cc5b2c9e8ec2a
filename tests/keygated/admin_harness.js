// admin_harness.js - what the admin API's test clients share
// (admin_client.js, admin_alerts_client.js): calls to the admin API
// whose every answer is checked for the security headers and validated
// against docs/openapi.json (ajv, JSON Schema 2020-12, the schema of its
// operation and status: a status the document does not list fails),
// /check calls, and the ok/FAIL lines with their counts.
//
// Environment: ADMIN, CHECK (base URLs), STORE (a name for the
// messages), TTL (the key cache's ttl in seconds), NODE_CACHE (where
// npm put the validators).
'use strict';
const { createRequire } = require('module');
const req = createRequire(process.env.NODE_CACHE + '/');
const SwaggerParser = req('@apidevtools/swagger-parser');
const Ajv2020 = req('ajv/dist/2020').default;
const addFormats = req('ajv-formats').default;

const ADMIN = process.env.ADMIN, CHECK = process.env.CHECK;
const STORE = process.env.STORE || '?';
const TTL = Number(process.env.TTL || 5);
let pass = 0, fail = 0;
const ok = (m) => { pass++; console.log(`ok - ${STORE}: ${m}`); };
const bad = (m) => { fail++; console.log(`FAIL - ${STORE}: ${m}`); };
const check = (cond, m, detail) => (cond ? ok(m) : bad(m + (detail !== undefined ? ': ' + JSON.stringify(detail) : '')));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let spec, ajv;

// Validate the document (swagger-parser) and load its schemas.
async function init(specPath) {
  try {
    await SwaggerParser.validate(specPath);
    ok('docs/openapi.json is a valid OpenAPI 3.1 document (swagger-parser)');
  } catch (e) { bad('swagger-parser: ' + e.message); }
  spec = await SwaggerParser.dereference(specPath);
  ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
}
const validators = new Map();
let validated = 0;

function schemaFor(template, method, status) {
  const op = spec.paths[template] && spec.paths[template][method.toLowerCase()];
  if (!op) return { missing: `no operation ${method} ${template}` };
  const r = op.responses[String(status)];
  if (!r) return { missing: `${method} ${template} does not document ${status}` };
  const c = r.content && r.content['application/json'];
  return { schema: c ? c.schema : null };
}

// call(method, template, {params, key, body, raw, headers, base}):
// fills {id} from params, sends, checks the security headers and the
// body against the document; returns {status, headers, body, text}.
async function call(method, template, o = {}) {
  let path = template;
  for (const [k, v] of Object.entries(o.params || {})) path = path.replace(`{${k}}`, encodeURIComponent(v));
  const headers = Object.assign({}, o.headers || {});
  if (o.key !== undefined && o.key !== null) headers.Authorization = `Bearer ${o.key}`;
  let body;
  if (o.raw !== undefined) body = o.raw;
  else if (o.body !== undefined) body = JSON.stringify(o.body);
  if (body !== undefined && !headers['Content-Type']) headers['Content-Type'] = 'application/json';
  const res = await fetch((o.base || ADMIN) + path + (o.query ? '?' + o.query : ''), { method, headers, body });
  const text = await res.text();
  let json = null;
  if (text.length) {
    try { json = JSON.parse(text); } catch (e) { bad(`${method} ${path}: not JSON: ${text.slice(0, 200)}`); }
  }
  if (res.headers.get('x-content-type-options') !== 'nosniff' || res.headers.get('cache-control') !== 'no-store')
    bad(`${method} ${path} ${res.status}: security headers missing`);
  // o.error: an answer outside the document's operations (no route,
  // 405): its body must still be the one error shape.
  const s = o.error ? { schema: spec.components.schemas.Error } : schemaFor(template, method, res.status);
  if (s.missing) bad(s.missing + ` (body ${text.slice(0, 200)})`);
  else if (s.schema) {
    const key = o.error ? 'Error' : `${method} ${template} ${res.status}`;
    let v = validators.get(key);
    if (!v) { v = ajv.compile(s.schema); validators.set(key, v); }
    if (!v(json)) bad(`${key}: body does not match the document: ${ajv.errorsText(v.errors)}: ${text.slice(0, 300)}`);
    else validated++;
  } else if (text.length) bad(`${method} ${template} ${res.status}: a body where the document says none`);
  return { status: res.status, headers: res.headers, body: json, text };
}

async function checkKey(key, path = '/v1/scrape') {
  const res = await fetch(CHECK + '/check' + path + '?lease=none', { headers: { Authorization: `Bearer ${key}` } });
  await res.text();
  return res.status;
}

// Polls /check until it answers `want` (the cache's ttl plus a margin).
async function checkUntil(key, want, path) {
  const t0 = Date.now();
  let s;
  while (Date.now() - t0 < (TTL + 3) * 1000) {
    s = await checkKey(key, path);
    if (s === want) return { s, ms: Date.now() - t0 };
    await sleep(200);
  }
  return { s, ms: Date.now() - t0 };
}

const isErr = (r, status, code, field) =>
  r.status === status && r.body && r.body.error && r.body.error.code === code &&
  (field === undefined || r.body.error.field === field);

// Print the counts and exit: 1 if anything failed.
function finish() {
  console.log(`${STORE}: ${validated} answers validated against docs/openapi.json`);
  console.log(`${pass} passed, ${fail} failed`);
  process.exit(fail ? 1 : 0);
}

module.exports = { init, call, checkKey, checkUntil, isErr, ok, bad, check, sleep, finish, TTL, STORE };
