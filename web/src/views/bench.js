// Bench: the report `timeglass bench` wrote for a run (GET /api/bench):
// its scorecard, the latency histogram of each loaded operation, and the
// probe's findings, each linked to its recorded request (traceback,
// queries, flame graph in the request view).

import { api, ApiError } from '../api.js';
import { h, notice } from '../dom.js';
import { fmtMs, fmtRps, fmtCount } from '../format.js';
import { href } from '../router.js';
import { errorNotice } from './common.js';

function scorecard(score) {
  const items = (score && score.scorecard) || [];
  return h('section', { class: 'card', 'aria-label': 'Bench scorecard' },
    h('div', { class: 'card-head' }, h('h2', null, 'Scorecard')),
    h('table', { class: 'grid compact bench-score' },
      h('thead', null, h('tr', null, h('th', null, 'Benchmark'), h('th', null, 'Grade'), h('th', null, 'Figure'))),
      h('tbody', null, items.map((it) => h('tr', null,
        h('td', null, it.name),
        h('td', { class: `grade grade-${it.grade || 'none'}` }, it.grade || '–'),
        h('td', { title: it.note || '' }, it.figure))))));
}

// The histogram's buckets ([upper ms, count]) folded into bins of a
// doubling width, drawn as bars.
function histogram(op) {
  const bins = new Map();
  for (const [ms, n] of op.histogram || []) {
    const b = Math.max(-10, Math.ceil(Math.log2(Math.max(ms, 1e-3))));
    bins.set(b, (bins.get(b) || 0) + n);
  }
  const keys = [...bins.keys()].sort((a, b) => a - b);
  const max = Math.max(1, ...bins.values());
  return h('div', { class: 'bench-hist', role: 'img', 'aria-label': `latency histogram of ${op.method} ${op.route}` },
    keys.map((k) => {
      const bar = h('span', { class: 'bench-bar', title: `≤ ${fmtMs(2 ** k)}: ${fmtCount(bins.get(k))} requests` });
      bar.style.height = `${Math.max(2, (bins.get(k) / max) * 100)}%`;
      return bar;
    }));
}

function operations(doc) {
  return h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', null, 'Load'),
      h('span', { class: 'muted' }, `${doc.mode === 'open' ? `open loop at ${doc.rate} req/s` : `closed loop`}, ${doc.connections} connections, ${doc.duration_s} s per operation`)),
    h('table', { class: 'grid compact bench-ops' },
      h('thead', null, h('tr', null, h('th', null, 'Operation'), h('th', { class: 'num' }, 'req/s'),
        h('th', { class: 'num' }, 'p50'), h('th', { class: 'num' }, 'p90'), h('th', { class: 'num' }, 'p99'),
        h('th', { class: 'num' }, 'p99.9'), h('th', { class: 'num' }, 'max'), h('th', { class: 'num' }, '5xx'),
        h('th', null, 'Latency histogram'))),
      h('tbody', null, doc.operations.map((op) => h('tr', null,
        h('td', null, h('span', { class: `method m-${op.method}` }, op.method), ' ', h('span', { class: 'mono' }, op.route)),
        ...(op.loaded
          ? [h('td', { class: 'num' }, fmtRps(op.rps)), h('td', { class: 'num' }, fmtMs(op.p50_ms)),
            h('td', { class: 'num' }, fmtMs(op.p90_ms)), h('td', { class: 'num' }, fmtMs(op.p99_ms)),
            h('td', { class: 'num' }, fmtMs(op.p999_ms)), h('td', { class: 'num' }, fmtMs(op.max_ms)),
            h('td', { class: 'num' }, fmtCount(Object.entries(op.status_counts || {}).filter(([s]) => s >= 500).reduce((a, [, n]) => a + n, 0))),
            h('td', null, histogram(op))]
          : [h('td', { colspan: 8, class: 'muted' }, op.skipped || 'not loaded')]))))));
}

function findings(doc, runId) {
  const p = doc.probe;
  return h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', null, `Findings (${doc.findings.length})`),
      h('span', { class: 'muted' }, `probe: ${fmtCount(p.cases)} bad inputs, ${fmtCount(p.answered_4xx)} answered 4xx, ${fmtCount(p.server_errors)} 5xx, ${fmtCount(p.accepted_invalid)} 2xx`)),
    doc.findings.length
      ? h('table', { class: 'grid compact bench-findings' },
        h('thead', null, h('tr', null, h('th', null, 'Check'), h('th', null, 'Operation'), h('th', { class: 'num' }, 'Status'),
          h('th', null, 'Request'), h('th', null, 'Detail'))),
        h('tbody', null, doc.findings.map((f) => h('tr', null,
          h('td', null, h('span', { class: `pill check-${f.check}` }, f.check)),
          h('td', null, h('span', { class: `method m-${f.method}` }, f.method), ' ', h('span', { class: 'mono' }, f.route)),
          h('td', { class: 'num' }, String(f.status)),
          h('td', null, f.request_id ? h('a', { href: `#/requests/${f.request_id}?run=${runId}`, class: 'bench-req' }, `#${f.request_id}`) : '–'),
          h('td', null, h('div', null, f.detail), h('code', { class: 'mono muted' }, f.request))))))
      : h('p', { class: 'muted' }, 'No finding: every response matched its schema and no input caused a 5xx.'));
}

export function mount(root, ctx) {
  const body = h('div', { class: 'page bench' }, h('p', { class: 'loading' }, 'Loading…'));
  root.append(body);
  const ctrl = new AbortController();
  api('bench', { run: ctx.params.get('run') || '' }, { signal: ctrl.signal }).then((doc) => {
    body.replaceChildren(
      h('p', { class: 'run-line' }, h('span', { class: 'run-id' }, `Run #${doc.run_id}`), h('code', null, `timeglass bench --url ${doc.url}`)),
      scorecard(doc.score), operations(doc), findings(doc, doc.run_id));
  }).catch((err) => {
    if (err.name === 'AbortError') return;
    if (err instanceof ApiError && err.code === 'no_bench') {
      body.replaceChildren(notice('info', 'No benchmark for this run',
        h('p', null, 'Run ', h('code', null, 'timeglass bench --url http://127.0.0.1:8000'), ' against an app recorded by ',
          h('code', null, 'timeglass run'), ', or ', h('code', null, 'timeglass bench -- uvicorn main:app'), '.')));
      return;
    }
    body.replaceChildren(errorNotice(err, ctx));
  });
  return { destroy() { ctrl.abort(); } };
}
