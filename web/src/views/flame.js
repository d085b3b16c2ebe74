// An interactive flame graph (icicle: the root on top) of a tree from
// GET /api/flame: click a frame to zoom into it, search to highlight
// frames, hover (or focus) for name, file:line, samples and share.
// Keyboard: the graph is one tab stop; arrows move between frames
// (up: caller, down: heaviest callee, left/right: neighbours), Enter zooms,
// Escape zooms out. Frame names and paths come from the app: text only.
// Options let another view (the comparison) weigh, colour and describe the
// frames its own way.

import { h, append, clear } from '../dom.js';
import { fmtCount } from '../format.js';

const ROW = 20; // px per depth level
const MIN_PCT = 0.15; // frames narrower than this share of the view are not drawn

function hashHue(s) {
  let x = 2166136261;
  for (let i = 0; i < s.length; i++) {
    x ^= s.charCodeAt(i);
    x = Math.imul(x, 16777619);
  }
  return (x >>> 0) % 1000 / 1000;
}

/** Prepares the API tree: parent links, depth, width (w, from weight) and
 * start offset per node. */
function index(root, weight) {
  const nodes = [];
  let maxDepth = 0;
  const walk = (n, parent, depth, x) => {
    n.parent = parent;
    n.depth = depth;
    n.x = x;
    n.i = nodes.length;
    n.w = weight(n);
    nodes.push(n);
    if (depth > maxDepth) maxDepth = depth;
    let cx = x;
    for (const c of n.children) {
      walk(c, n, depth + 1, cx);
      cx += c.w;
    }
  };
  walk(root, null, 0, 0);
  return { nodes, maxDepth };
}

export function pct(v, total) {
  if (!total || !v) return '0%';
  const p = (v / total) * 100;
  return `${p < 1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : p.toFixed(0)}%`;
}

export function where(n) {
  if (!n.file) return '';
  return n.line ? `${n.file}:${n.line}` : n.file;
}

function special(n) {
  return n.name === '(waiting)' || n.name === '(other)' || n.depth === 0;
}

/** Functions of a tree (a qualname in a file, whatever the line) with their
 * own samples (innermost frame) and their samples with callees (counted
 * once per stack however deep the recursion), most own first. */
export function topFunctions(root) {
  const byKey = new Map();
  const active = new Map(); // key -> frames of it on the current path
  const walk = (n) => {
    const key = n.depth === 0 ? null : `${n.name}\u0000${n.file || ''}`;
    let f = null;
    if (key !== null) {
      f = byKey.get(key);
      if (!f) byKey.set(key, f = { name: n.name, file: n.file || '', self: 0, total: 0 });
      if (!active.get(key)) f.total += n.value;
      active.set(key, (active.get(key) || 0) + 1);
      let below = 0;
      for (const c of n.children) below += c.value;
      f.self += Math.max(0, n.value - below);
    }
    for (const c of n.children) walk(c);
    if (key !== null) active.set(key, active.get(key) - 1);
  };
  walk(root);
  return [...byKey.values()].sort((a, b) => b.self - a.self || b.total - a.total || a.name.localeCompare(b.name));
}

const defaultTip = (n, total, zoom, root) => [
  h('div', null, `${fmtCount(n.value)} samples · ${pct(n.value, total)} of all`,
    zoom !== root ? ` · ${pct(n.value, zoom.value)} of zoom` : ''),
];

/**
 * The flame graph of data (GET /api/flame with available and samples).
 * Options: label; weight(n) (frame width, default its samples); paint(n, el)
 * (colour, default a hue from the name); tip(n, total, zoom, root) (the
 * tooltip's lines); describe(n) (accessible text); rootLabel; legend (an
 * element replacing the sample counts below the graph); top (a table of the
 * functions with the most samples below it; a row searches the graph).
 * Returns {el, destroy()}.
 */
export function flameGraph(data, {
  label = 'Flame graph',
  weight = (n) => n.value,
  paint = null,
  tip: tipLines = defaultTip,
  describe = null,
  rootLabel = null,
  legend: legendEl = null,
  top = false,
} = {}) {
  const root = data.tree;
  const { nodes, maxDepth } = index(root, weight);
  const total = root.w;
  let zoom = root;
  let focus = root;
  let needle = '';

  const search = h('input', {
    type: 'search', class: 'flame-search', placeholder: 'Search frames…', 'aria-label': 'Search frames', spellcheck: 'false',
  });
  const matchInfo = h('span', { class: 'muted small flame-match', 'aria-live': 'polite' });
  const reset = h('button', { type: 'button', class: 'small', disabled: true }, 'Reset zoom');
  const crumbs = h('div', { class: 'flame-crumbs', 'aria-label': 'Zoomed frame' });
  const canvas = h('div', {
    class: 'flame', role: 'tree', tabindex: '0',
    'aria-label': `${label}${legendEl ? '' : `: ${fmtCount(total)} samples`}. Arrow keys move, Enter zooms, Escape zooms out.`,
  });
  canvas.style.height = `${(maxDepth + 1) * ROW}px`;
  const tip = h('div', { class: 'flame-tip', role: 'tooltip', hidden: true });
  const wrap = h('div', { class: 'flame-wrap' }, canvas, tip);
  const legend = legendEl || h('p', { class: 'muted small flame-legend' },
    `${fmtCount(total)} samples`,
    data.waiting ? ` · ${fmtCount(data.running)} running, ${fmtCount(data.waiting)} waiting (off CPU, shown as “(waiting)”)` : '',
    data.capped ? ' · the smallest stacks are merged into “(other)”' : '',
    ' · click a frame to zoom');
  const el = h('div', { class: 'flame-box' },
    h('div', { class: 'flame-tools' }, search, matchInfo, h('span', { class: 'spacer' }), reset),
    crumbs, wrap, legend);

  const matches = (n) => needle && !special(n) && (n.name.toLowerCase().includes(needle) || where(n).toLowerCase().includes(needle));

  function showTip(n, evX, evY) {
    clear(tip);
    tip.append(
      h('div', { class: 'flame-tip-name' }, n.depth === 0 ? 'all samples' : n.name),
      where(n) ? h('div', { class: 'mono small' }, where(n)) : null,
      ...tipLines(n, total, zoom, root));
    tip.hidden = false;
    const box = wrap.getBoundingClientRect();
    const w = tip.offsetWidth;
    let x = evX - box.left + 12;
    if (x + w > box.width) x = Math.max(0, evX - box.left - w - 12);
    tip.style.left = `${x}px`;
    tip.style.top = `${evY - box.top + 14}px`;
  }

  function draw() {
    needle = search.value.trim().toLowerCase();
    clear(canvas);
    const span = zoom.w || 1;
    let matched = 0;
    // Top-most matches count once (their subtrees include nested matches).
    const countMatch = (n) => {
      if (matches(n)) { matched += n.w; return; }
      for (const c of n.children) countMatch(c);
    };
    if (needle) countMatch(root);
    for (const n of nodes) {
      let left;
      let width;
      const ancestor = n.depth < zoom.depth;
      if (ancestor) {
        // The zoomed frame's callers: full width, faded.
        let a = zoom;
        while (a && a.depth > n.depth) a = a.parent;
        if (a !== n) continue;
        left = 0;
        width = 100;
      } else {
        if (n.x < zoom.x || n.x >= zoom.x + span || !n.w) continue;
        let a = n;
        while (a && a.depth > zoom.depth) a = a.parent;
        if (a !== zoom) continue;
        left = ((n.x - zoom.x) / span) * 100;
        width = (n.w / span) * 100;
        if (width < MIN_PCT) continue;
      }
      const cls = ['flame-frame'];
      if (n.depth === 0) cls.push('f-root');
      else if (n.name === '(waiting)') cls.push('f-wait');
      else if (n.name === '(other)') cls.push('f-other');
      if (ancestor) cls.push('f-ancestor');
      if (needle) cls.push(matches(n) ? 'f-match' : 'f-dim');
      if (n === focus) cls.push('f-focus');
      const f = h('div', {
        class: cls.join(' '), role: 'treeitem', 'aria-level': String(n.depth + 1),
        'aria-label': describe ? describe(n) : `${n.depth === 0 ? 'all' : n.name}, ${fmtCount(n.value)} samples, ${pct(n.value, total)}`,
        dataset: { i: String(n.i) },
      }, h('span', { class: 'flame-label' }, n.depth === 0 ? (rootLabel || `all (${fmtCount(n.value)} samples)`) : n.name));
      if (paint) paint(n, f);
      else if (!special(n)) f.style.setProperty('--h', String(hashHue(n.name)));
      f.style.left = `${left}%`;
      f.style.width = `${width}%`;
      f.style.top = `${n.depth * ROW}px`;
      canvas.appendChild(f);
    }
    matchInfo.textContent = needle ? (matched ? `matches ${pct(matched, total)} of samples` : 'no match') : '';
    reset.disabled = zoom === root;
    clear(crumbs);
    if (zoom !== root) {
      const chain = [];
      for (let a = zoom; a; a = a.parent) chain.unshift(a);
      append(crumbs, chain.map((a, k) => [k ? h('span', { class: 'muted' }, ' › ') : null,
        h('button', { type: 'button', class: 'link small', on: { click: () => setZoom(a) } }, a.depth === 0 ? 'all' : a.name)]));
    }
  }

  function setZoom(n) {
    zoom = n || root;
    focus = zoom;
    draw();
  }

  canvas.addEventListener('click', (ev) => {
    const f = ev.target.closest('.flame-frame');
    if (!f) return;
    const n = nodes[Number(f.dataset.i)];
    focus = n;
    setZoom(n === zoom ? n.parent || root : n);
  });
  canvas.addEventListener('mousemove', (ev) => {
    const f = ev.target.closest('.flame-frame');
    if (!f) { tip.hidden = true; return; }
    showTip(nodes[Number(f.dataset.i)], ev.clientX, ev.clientY);
  });
  canvas.addEventListener('mouseleave', () => { tip.hidden = true; });
  canvas.addEventListener('keydown', (ev) => {
    let next = null;
    const visible = (n) => n && n.w > 0;
    switch (ev.key) {
      case 'ArrowUp': next = focus.parent; break;
      case 'ArrowDown': next = focus.children.find(visible) || null; break;
      case 'ArrowLeft':
      case 'ArrowRight': {
        if (!focus.parent) break;
        const sib = focus.parent.children;
        const k = sib.indexOf(focus) + (ev.key === 'ArrowLeft' ? -1 : 1);
        next = sib[k] || null;
        break;
      }
      case 'Enter': case ' ': setZoom(focus); ev.preventDefault(); return;
      case 'Escape':
        if (zoom !== root) { ev.preventDefault(); ev.stopPropagation(); setZoom(zoom.parent); }
        return;
      default: return;
    }
    ev.preventDefault();
    if (!next) return;
    focus = next;
    if (focus.depth < zoom.depth || (focus.depth > zoom.depth && !(focus.x >= zoom.x && focus.x < zoom.x + zoom.w))) zoom = root;
    draw();
    const f = canvas.querySelector('.f-focus');
    if (f) {
      const r = f.getBoundingClientRect();
      showTip(focus, r.left + Math.min(r.width, 40), r.top + ROW / 2);
    }
  });
  canvas.addEventListener('blur', () => { tip.hidden = true; });
  reset.addEventListener('click', () => setZoom(root));
  let timer = null;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(draw, 80);
  });
  search.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && search.value) { ev.stopPropagation(); search.value = ''; draw(); }
  });
  if (top) el.append(topTable(root, total, (name) => { search.value = name; draw(); canvas.focus(); }));
  draw();
  return { el, destroy() { clearTimeout(timer); } };
}

const TOP_ROWS = 15;

function topTable(root, total, pick) {
  const funcs = topFunctions(root).filter((f) => f.name !== '(other)');
  const shown = funcs.slice(0, TOP_ROWS);
  const body = h('tbody', null, shown.map((f) => h('tr', {
    tabindex: '0', class: 'clickable', title: 'Highlight its frames in the flame graph',
    on: { click: () => pick(f.name), keydown: (ev) => { if (ev.key === 'Enter') pick(f.name); } },
  },
  h('td', null, h('span', { class: 'mono' }, f.name), f.file ? h('span', { class: 'muted small' }, ' ', f.file) : null),
  h('td', { class: 'num' }, fmtCount(f.self)),
  h('td', { class: 'num' }, pct(f.self, total)),
  h('td', { class: 'num' }, fmtCount(f.total)),
  h('td', { class: 'num' }, pct(f.total, total)))));
  return h('details', { class: 'flame-top', open: true },
    h('summary', null, `Top functions${funcs.length > TOP_ROWS ? ` (${TOP_ROWS} of ${fmtCount(funcs.length)})` : ''}`),
    h('table', { class: 'grid flame-top-table' },
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, 'Function'),
        h('th', { scope: 'col', class: 'num', title: 'Samples where it was the innermost frame' }, 'Self'),
        h('th', { scope: 'col', class: 'num' }, 'Self %'),
        h('th', { scope: 'col', class: 'num', title: 'Samples with it anywhere on the stack' }, 'Total'),
        h('th', { scope: 'col', class: 'num' }, 'Total %'))),
      body));
}
