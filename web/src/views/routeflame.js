// A route's flame graph: the stack samples of every request of one route
// (METHOD and template) in a run, merged (GET /api/flame?route=...&run=...),
// with a choice of running, waiting or all samples.

import { api } from '../api.js';
import { h, clear, notice } from '../dom.js';
import { href, navigate } from '../router.js';
import { errorNotice } from './common.js';
import { flameGraph } from './flame.js';

const STATES = [['all', 'All samples'], ['running', 'Running (on CPU)'], ['waiting', 'Waiting (off CPU)']];

export function mount(root, ctx) {
  const route = ctx.params.get('route') || '';
  const state = ctx.params.get('state') || 'all';
  const runId = ctx.runId;
  let destroyed = false;
  let graph = null;
  const sp = route.indexOf(' ');
  const method = sp > 0 ? route.slice(0, sp) : '';
  const tmpl = sp > 0 ? route.slice(sp + 1) : route;
  const select = h('select', { 'aria-label': 'Samples' }, STATES.map(([v, l]) => h('option', { value: v, selected: v === state }, l)));
  select.addEventListener('change', () => navigate('flame', { run: ctx.params.get('run'), route, state: select.value }, { replace: true }));
  const box = h('section', { class: 'card' }, h('p', { class: 'loading' }, 'Loading…'));
  root.append(h('div', { class: 'page route-flame' },
    h('div', { class: 'page-head' },
      h('a', { href: href('endpoints', { run: ctx.params.get('run') }), class: 'back' }, '← Endpoints'),
      h('h1', { class: 'req-title' }, 'Flame graph', h('span', { class: `method m-${method}` }, method || '?'), h('span', { class: 'mono path' }, tmpl)),
      h('a', { href: href('requests', { run: runId, method, route: tmpl }) }, 'Its requests →'),
      select),
    box));
  if (!route) {
    clear(box);
    box.append(notice('error', 'No route given', 'Open a flame graph from the Endpoints view.'));
    return null;
  }
  api('flame', { route, run: runId, state }).then((d) => {
    if (destroyed) return;
    clear(box);
    if (!d.available) {
      box.append(h('p', { class: 'muted' }, 'Flame graph: not captured yet (this store has no stack samples).'));
    } else if (!d.total) {
      box.append(h('p', { class: 'muted' }, 'Flame graph: no samples for this route in this run.'));
    } else {
      graph = flameGraph(d, { label: `Flame graph of ${route}`, top: true });
      box.append(graph.el);
    }
  }).catch((e) => {
    if (destroyed) return;
    clear(box);
    box.append(errorNotice(e, ctx));
  });
  return { destroy() { destroyed = true; if (graph) graph.destroy(); } };
}
