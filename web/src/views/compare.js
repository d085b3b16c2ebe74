// Compare: a differential flame graph of two sides, each a route in a run
// or a whole run (GET /api/flame/diff). Frame widths are the mean of the
// frame's share of each side; colours show the change of its share from A
// to B (red: grew in B, blue: shrank). Frame names come from the app:
// text only.

import { api } from '../api.js';
import { h, clear, notice } from '../dom.js';
import { navigate } from '../router.js';
import { fmtCount } from '../format.js';
import { errorNotice } from './common.js';
import { flameGraph, pct, where } from './flame.js';

const STATES = [['all', 'All samples'], ['running', 'Running (on CPU)'], ['waiting', 'Waiting (off CPU)']];

/** The change of share as signed percentage points. */
function points(d) {
  const p = d * 100;
  const a = Math.abs(p);
  const s = a < 1 ? a.toFixed(2) : a < 10 ? a.toFixed(1) : a.toFixed(0);
  return `${p > 0 ? '+' : p < 0 ? '−' : '±'}${s} pts`;
}

function sideText(side) {
  return side.route ? `${side.route} · run #${side.run}` : `whole run #${side.run}`;
}

/** The differential flame graph of d (GET /api/flame/diff). */
function diffGraph(d) {
  const ta = d.total_a;
  const tb = d.total_b;
  const share = (n) => [ta ? n.value_a / ta : 0, tb ? n.value_b / tb : 0];
  const delta = (n) => { const [a, b] = share(n); return b - a; };
  const weight = (n) => {
    const [a, b] = share(n);
    return ta && tb ? (a + b) / 2 : a + b;
  };
  let maxAbs = 0.01;
  const walk = (n, depth) => {
    if (depth) maxAbs = Math.max(maxAbs, Math.abs(delta(n)));
    for (const c of n.children) walk(c, depth + 1);
  };
  walk(d.tree, 0);
  const legend = h('div', { class: 'diff-legend small' },
    h('span', { class: 'diff-key' }, `A: ${sideText(d.a)} · ${fmtCount(ta)} samples`),
    h('span', { class: 'diff-key' }, `B: ${sideText(d.b)} · ${fmtCount(tb)} samples`),
    h('span', { class: 'diff-scale', 'aria-hidden': 'true' },
      h('span', null, 'shrank in B'), h('span', { class: 'diff-ramp' }), h('span', null, 'grew in B')),
    h('span', { class: 'muted' }, `colour: change of a frame's share of its side's samples (full colour at ${points(maxAbs).slice(1)}) · width: mean share · click a frame to zoom`));
  return flameGraph(d, {
    label: 'Differential flame graph',
    weight,
    legend,
    rootLabel: `all (A ${fmtCount(ta)} · B ${fmtCount(tb)} samples)`,
    paint(n, el) {
      if (n.depth === 0) return;
      const dl = delta(n);
      el.classList.add('f-diff', dl > 0 ? 'f-grew' : dl < 0 ? 'f-shrank' : 'f-same');
      el.style.setProperty('--k', Math.min(1, Math.abs(dl) / maxAbs).toFixed(3));
    },
    tip(n) {
      const [a, b] = share(n);
      return [
        h('div', null, `A: ${fmtCount(n.value_a)} samples · ${pct(n.value_a, ta)} of A`),
        h('div', null, `B: ${fmtCount(n.value_b)} samples · ${pct(n.value_b, tb)} of B`),
        h('div', { class: 'diff-delta' }, `Change: ${points(b - a)} (share of B minus share of A)`),
      ];
    },
    describe(n) {
      const name = n.depth === 0 ? 'all' : n.name;
      return `${name}, A ${pct(n.value_a, ta)}, B ${pct(n.value_b, tb)}, change ${points(delta(n))}${where(n) ? `, ${where(n)}` : ''}`;
    },
  });
}

export function mount(root, ctx) {
  const p = ctx.params;
  const runs = ctx.runs;
  const dflt = p.get('run') || (runs.length ? String(runs[0].id) : '');
  const sides = {
    a: { run: p.get('a_run') || (runs.length > 1 && !p.get('run') ? String(runs[1].id) : dflt), route: p.get('a_route') || '' },
    b: { run: p.get('b_run') || dflt, route: p.get('b_route') || '' },
  };
  const state = p.get('state') || 'all';
  let destroyed = false;
  let graph = null;

  const go = () => navigate('compare', {
    a_run: sides.a.run, a_route: sides.a.route, b_run: sides.b.run, b_route: sides.b.route, state: stateSel.value,
  }, { replace: true });

  function picker(key, title) {
    const side = sides[key];
    const runSel = h('select', { 'aria-label': `${title}: run`, dataset: { side: key, pick: 'run' } },
      runs.map((r) => h('option', { value: String(r.id), selected: String(r.id) === side.run }, `#${r.id} · ${fmtCount(r.requests)} req`)));
    const routeSel = h('select', { 'aria-label': `${title}: route`, dataset: { side: key, pick: 'route' } },
      h('option', { value: '' }, 'Whole run'));
    if (side.route) routeSel.append(h('option', { value: side.route, selected: true }, side.route));
    runSel.addEventListener('change', () => { side.run = runSel.value; side.route = ''; go(); });
    routeSel.addEventListener('change', () => { side.route = routeSel.value; go(); });
    if (side.run) {
      api('endpoints', { run: side.run, limit: 500 }).then((d) => {
        if (destroyed) return;
        for (const e of d.endpoints) {
          if (e.is_other) continue;
          const v = `${e.method} ${e.route}`;
          if (v === side.route) continue;
          routeSel.append(h('option', { value: v }, `${v} (${fmtCount(e.count)})`));
        }
      }).catch(() => {});
    }
    return h('fieldset', { class: `compare-side side-${key}` },
      h('legend', null, title), runSel, routeSel);
  }

  const stateSel = h('select', { 'aria-label': 'Samples' }, STATES.map(([v, l]) => h('option', { value: v, selected: v === state }, l)));
  stateSel.addEventListener('change', go);
  const box = h('section', { class: 'card' }, h('p', { class: 'loading' }, 'Loading…'));
  root.append(h('div', { class: 'page compare' },
    h('div', { class: 'page-head' }, h('h1', null, 'Compare'), stateSel),
    h('div', { class: 'compare-pickers' }, picker('a', 'A (before)'), h('span', { class: 'compare-vs', 'aria-hidden': 'true' }, 'vs'), picker('b', 'B (after)')),
    box));
  api('flame/diff', {
    a_run: sides.a.run, a_route: sides.a.route, b_run: sides.b.run, b_route: sides.b.route, state,
  }).then((d) => {
    if (destroyed) return;
    clear(box);
    if (!d.available) {
      box.append(h('p', { class: 'muted' }, 'Compare: not captured yet (this store has no stack samples).'));
    } else if (!d.total_a && !d.total_b) {
      box.append(h('p', { class: 'muted' }, 'Compare: no samples on either side.'));
    } else {
      graph = diffGraph(d);
      box.append(graph.el);
    }
  }).catch((e) => {
    if (destroyed) return;
    clear(box);
    box.append(errorNotice(e, ctx));
  });
  if (!runs.length) {
    clear(box);
    box.append(notice('empty', 'No runs yet', 'Record a run to compare.'));
  }
  return { destroy() { destroyed = true; if (graph) graph.destroy(); } };
}
