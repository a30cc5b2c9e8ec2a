// dom.js - building the page without HTML strings.
//
// Every value that comes from the API goes into the page as a text node
// or an attribute value, never through innerHTML or an HTML string: a key
// named "<img src=x onerror=alert(1)>" shows as those characters
// (docs/dashboard.md, "Security").  Nothing here parses HTML.

// h("tag", {attr: value, onclick: fn}, child...): an element.  A child
// is a node, a string (a text node), null/false (skipped) or an array of
// those.  An attribute named on... must be a function (an event
// listener); a string there is refused, so that no handler is ever
// built from text.
export function h(tag, attrs, ...children) {
  const svg = tag.startsWith('svg:');
  const el = svg
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) {
      if (typeof value !== 'function') throw new Error('handler must be a function: ' + name);
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.setAttribute('class', value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replace everything inside el with children.
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// A time as the reader's local time, with the ISO time on hover and for
// machines (<time datetime>).  null: "never".
export function time(iso, never = 'never') {
  if (!iso) return h('span', {class: 'muted'}, never);
  const d = new Date(iso);
  if (isNaN(d)) return h('span', {}, String(iso));
  return h('time', {datetime: iso, title: iso}, d.toLocaleString());
}

// Unix seconds as the API's ISO time ("2026-12-06T03:00:00Z").
export function isoTime(s) {
  return new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function fmtNumber(n) {
  return typeof n === 'number' ? n.toLocaleString() : String(n ?? '');
}

// Seconds as "1h", "1d", "30s".
export function fmtWindow(s) {
  if (!s) return '';
  for (const [u, n] of [['d', 86400], ['h', 3600], ['m', 60]])
    if (s % n === 0) return (s / n) + u;
  return s + 's';
}

// The first 8 characters of a key, as lists show it (never more).
export function prefix(p) {
  return p ? String(p).slice(0, 8) + '…' : '';
}

// A table: cols is [{title, cell(row) -> node|string}], rows the items.
// Wrapped in a region that scrolls sideways at 360 px and can be
// scrolled from the keyboard (it takes focus).
export function table(label, cols, rows, empty = 'Nothing to show.') {
  if (!rows.length) return h('p', {class: 'empty'}, empty);
  return h('div', {class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: '0'},
    h('table', {},
      h('caption', {class: 'sr-only'}, label),
      h('thead', {}, h('tr', {}, cols.map(c => h('th', {scope: 'col'}, c.title)))),
      h('tbody', {}, rows.map(r => h('tr', {}, cols.map(c => h('td', {'data-col': c.title}, c.cell(r))))))));
}

// A labelled form control: label(text, control) -> <div class=field>.
let nextId = 0;
export function field(text, control, hint) {
  const id = control.id || ('f' + (++nextId));
  control.id = id;
  let hintEl = null;
  if (hint) {
    hintEl = h('span', {class: 'hint', id: id + '-hint'}, hint);
    control.setAttribute('aria-describedby', id + '-hint');
  }
  return h('div', {class: 'field'}, h('label', {for: id}, text), control, hintEl);
}

// A message in the page's live region (read out by screen readers).
export function status(el, text, kind = 'info') {
  fill(el, text ? h('p', {class: 'msg ' + kind}, text) : null);
}

// A badge for a key's or account's status.
export function badge(s) {
  return h('span', {class: 'badge b-' + String(s || 'unknown').replace(/[^a-z]/g, '')}, s || 'unknown');
}

// What the usage pages say when keygated records no usage.
export function noUsage(title) {
  return [h('h1', {tabindex: '-1'}, title),
    h('p', {class: 'msg info', id: 'no-usage'},
      'Usage is not recorded on this keygated: its policy has no usage: section (docs/usage.md).')];
}
