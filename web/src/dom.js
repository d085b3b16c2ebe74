// DOM helpers. Everything the page shows that comes from the store is
// attacker-controlled (paths, headers, exception text): it only ever enters
// the document as text nodes or attribute values set through the DOM, never
// as markup.

/**
 * Creates an element. attrs: {class, text, on: {event: fn}, dataset: {},
 * ...attributes}; children: nodes, strings (text) or arrays of them; null and
 * false are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on')) throw new Error('use attrs.on for event handlers');
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** A message panel: "empty" (nothing yet), "error" or "info". */
export function notice(kind, title, ...body) {
  return h('section', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('h2', null, title), ...body.map((b) => (typeof b === 'string' ? h('p', null, b) : b)));
}

/** Renders text with `code` spans (backquoted parts) as <code>, safely. */
export function richText(text) {
  const parts = String(text).split('`');
  return parts.map((p, i) => (i % 2 ? h('code', null, p) : p));
}
