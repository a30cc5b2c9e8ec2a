// standardwebhooks_verify.js SECRET-FILE HEADERS-FILE BODY-FILE - checks a
// webhook the way a customer's receiver would, with the npm
// `standardwebhooks` library (the Standard Webhooks reference for
// JavaScript), for tests/keygated/test_alerts.sh.  HEADERS-FILE holds
// "Name: value" lines as tests/keygated/receiver.py kept them; the body
// is checked byte for byte.  Prints "valid" and exits 0, or "invalid:
// why" and exits 1.  NODE_CACHE: where npm installed the library.
'use strict';
const fs = require('fs');
const { createRequire } = require('module');
const { Webhook } = createRequire(process.env.NODE_CACHE + '/')('standardwebhooks');

const [secretFile, headersFile, bodyFile] = process.argv.slice(2);
const headers = {};
for (const line of fs.readFileSync(headersFile, 'utf8').split('\n')) {
  const i = line.indexOf(':');
  if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
}
try {
  new Webhook(fs.readFileSync(secretFile, 'utf8').trim()).verify(fs.readFileSync(bodyFile), headers);
  console.log('valid');
} catch (e) {
  console.log('invalid: ' + e.message);
  process.exit(1);
}
