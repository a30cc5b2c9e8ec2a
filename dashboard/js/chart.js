// chart.js - the usage chart, drawn as SVG by this code (no library):
// stacked bars of allowed and denied requests per bucket, and the plan's
// limit for that bucket size as a dashed line.  The same numbers are in
// a table beside it for screen readers (usage.js).
import {h, fmtNumber} from './dom.js';

const W = 720, H = 260, L = 56, R = 12, T = 14, B = 34;

// series: [{start: Date, allowed, denied}], limit: {name, count} or null,
// span: seconds per bucket.
export function usageChart(series, limit, span, label) {
  const top = Math.max(1, ...series.map(s => s.allowed + s.denied), limit ? limit.count : 0);
  const max = niceCeil(top);
  const y = v => T + (H - T - B) * (1 - v / max);
  const bw = (W - L - R) / Math.max(1, series.length);
  const svg = h('svg:svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label,
    id: 'usage-chart'});
  // Grid and y axis.
  for (const v of [0, max / 2, max]) {
    svg.appendChild(h('svg:line', {x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid'}));
    svg.appendChild(h('svg:text', {x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis'}, fmtNumber(v)));
  }
  series.forEach((s, i) => {
    const x = L + i * bw + Math.min(1, bw * 0.1);
    const w = Math.max(1, bw - Math.min(2, bw * 0.2));
    const title = `${s.start.toLocaleString()}: ${fmtNumber(s.allowed)} allowed, ${fmtNumber(s.denied)} denied`;
    if (s.allowed > 0)
      svg.appendChild(h('svg:rect', {x, width: w, y: y(s.allowed), height: y(0) - y(s.allowed), class: 'bar-allowed'},
        h('svg:title', {}, title)));
    if (s.denied > 0)
      svg.appendChild(h('svg:rect', {x, width: w, y: y(s.allowed + s.denied), height: y(s.allowed) - y(s.allowed + s.denied),
        class: 'bar-denied'}, h('svg:title', {}, title)));
  });
  // A few time labels along the bottom (every other one is "minor": a
  // phone shows half of them, larger).
  const every = Math.max(1, Math.ceil(series.length / 6));
  series.forEach((s, i) => {
    if (i % every) return;
    const minor = (i / every) % 2 === 1;
    const text = span >= 86400 ? s.start.toLocaleDateString(undefined, {month: 'short', day: 'numeric'})
      : s.start.toLocaleString(undefined, {weekday: 'short', hour: '2-digit', minute: '2-digit'});
    svg.appendChild(h('svg:text', {x: L + i * bw, y: H - B + 16, class: minor ? 'axis minor' : 'axis'}, text));
  });
  if (limit) {
    svg.appendChild(h('svg:line', {x1: L, x2: W - R, y1: y(limit.count), y2: y(limit.count), class: 'limit',
      id: 'chart-limit'}));
    // Below the line: the limit is often the top of the scale.
    svg.appendChild(h('svg:text', {x: W - R - 4, y: y(limit.count) + 5, 'text-anchor': 'end',
      'dominant-baseline': 'hanging', class: 'limit-label'},
      `${limit.name} limit ${fmtNumber(limit.count)}`));
  }
  return svg;
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
