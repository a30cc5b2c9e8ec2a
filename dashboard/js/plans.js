// plans.js - the policy's plans (/api/v1/plans) and an account's
// effective limits (the plan's, overridden by the account's own).
import * as api from './api.js';

let cache = null;

// [{name, limits: [{name, count, window, burst}]}], tolerant of the list
// being {items: [...]} or an object keyed by plan name.
export async function plans() {
  if (cache) return cache;
  const raw = await api.get('/plans');
  let list = Array.isArray(raw) ? raw : raw && Array.isArray(raw.items) ? raw.items
    : raw && raw.plans ? (Array.isArray(raw.plans) ? raw.plans : Object.entries(raw.plans).map(([name, p]) => ({name, ...p})))
      : Object.entries(raw || {}).map(([name, p]) => ({name, ...p}));
  cache = list.map(p => ({name: p.name, limits: limitList(p.limits)}));
  return cache;
}

export function limitList(l) {
  if (!l) return [];
  // count null (or absent): a limit the API gives no size for.
  const one = (name, x) => ({name, count: x.count == null ? null : +x.count, window: +(x.window || 0),
    burst: +(x.burst || 0), per: x.per || 'account'});
  return Array.isArray(l) ? l.map(x => one(x.name, x)) : Object.entries(l).map(([name, x]) => one(name, x));
}

// The limits that apply to the account now.  A limit whose count the
// API does not give (count null) is listed by name only.
export async function accountLimits(account) {
  let list = [];
  try {
    const p = (await plans()).find(p => p.name === account.plan);
    if (p) list = p.limits.slice();
  } catch (e) {
    // No plans route for this key: the account's own overrides only.
  }
  for (const o of limitList(account.limits)) {
    const i = list.findIndex(x => x.name === o.name);
    if (i >= 0) list[i] = {...list[i], ...o}; else list.push(o);
  }
  return list;
}
