// client.js - bench/admin/run.sh's client: GET URL_PATH for random
// accounts, one request at a time on one kept-alive connection, for
// SECONDS; prints the latency percentiles (each request timed from its
// write to its last byte, process.hrtime) and the answers that were not
// 200.  Usage: node client.js BASE KEY ACCOUNTS SECONDS
'use strict';
const http = require('http');
const [base, key, accounts, seconds] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const u = new URL(base);

function one(id) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.get({ host: u.hostname, port: u.port, agent,
      path: `/api/v1/accounts/${id}/usage?by=hour&since=7d`,
      headers: { Authorization: `Bearer ${key}` } }, (res) => {
      let n = 0;
      res.on('data', (b) => { n += b.length; });
      res.on('end', () => resolve({ status: res.statusCode, us: Number(process.hrtime.bigint() - t0) / 1000, bytes: n }));
    });
    req.on('error', reject);
  });
}

(async () => {
  const lat = [];
  let bad = 0, bytes = 0;
  const end = Date.now() + Number(seconds) * 1000;
  while (Date.now() < end) {
    const id = 'acct_b' + String(Math.floor(Math.random() * Number(accounts))).padStart(7, '0');
    const r = await one(id);
    if (r.status !== 200) bad++;
    bytes += r.bytes;
    lat.push(r.us);
  }
  lat.sort((a, b) => a - b);
  const p = (q) => (lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] / 1000).toFixed(2);
  console.log(`${lat.length} requests in ${seconds} s (${(lat.length / seconds).toFixed(0)}/s), ` +
              `${(bytes / lat.length / 1024).toFixed(1)} KiB an answer, ${bad} not 200`);
  console.log(`latency ms: p50 ${p(0.5)}  p90 ${p(0.9)}  p99 ${p(0.99)}  p99.9 ${p(0.999)}  max ${p(1)}`);
  agent.destroy();
})();
