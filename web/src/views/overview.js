// Overview: the run's scorecard (latency, throughput, errors, CPU, memory,
// losses), charts over time, and the slowest endpoints. What counts as a
// loss is decided by the server (lib/losses.c, shared with the command
// line): a lowered sampling rate is information, never a loss.

import { api } from '../api.js';
import { h, append, clear, notice } from '../dom.js';
import { fmtMs, fmtRate, fmtRps, fmtCount, fmtPct, fmtBytes, fmtDuration } from '../format.js';
import { href, navigate } from '../router.js';
import { timeChart, seriesColor } from '../charts.js';
import { runLine, liveLoad } from './common.js';

function tile(label, value, sub, tone) {
  return h('div', { class: `tile${tone ? ` tile-${tone}` : ''}` },
    h('div', { class: 'tile-label' }, label),
    h('div', { class: 'tile-value' }, value),
    sub ? h('div', { class: 'tile-sub' }, sub) : null);
}

function scorecard(ov) {
  const s = ov.summary;
  const res = ov.resources;
  const lostEvents = ov.recording.lost_events;
  const q = ov.queries;
  return h('section', { class: 'tiles', 'aria-label': 'Scorecard' },
    tile('Requests', fmtCount(s.count), s.count ? `over ${fmtDuration(s.active_s)}` : 'none yet'),
    tile('Throughput', `${fmtRps(s.rps)} req/s`, `peak ${fmtRps(s.peak_rps)} req/s`),
    tile('Latency avg', fmtMs(s.avg_ms), `p50 ${fmtMs(s.p50_ms)}`),
    tile('Latency p90', fmtMs(s.p90_ms), `p95 ${fmtMs(s.p95_ms)}`),
    tile('Latency p99', fmtMs(s.p99_ms), `max ${fmtMs(s.max_ms)}`),
    tile('5xx rate', fmtRate(s.rate_5xx), `${fmtCount(s.n_5xx)} server errors`, s.n_5xx ? 'bad' : 'good'),
    tile('4xx rate', fmtRate(s.rate_4xx), `${fmtCount(s.n_4xx)} client errors`, s.n_4xx ? 'warn' : null),
    tile('CPU', ov.processes.length ? fmtPct(res.cpu_avg_pct) : '–',
      ov.processes.length > 1 ? `mean, ${ov.processes.length} processes summed` : ov.processes.length ? 'mean over the run' : 'not sampled'),
    tile('Memory', ov.processes.length ? fmtBytes(res.rss_peak_bytes) : '–',
      ov.processes.length > 1 ? 'peak RSS, processes summed' : ov.processes.length ? 'peak RSS' : 'not sampled'),
    q.available && q.count !== undefined
      ? tile('DB time', q.db_share !== undefined ? fmtRate(q.db_share) : fmtMs(q.total_ms),
        q.db_share !== undefined ? `of request time · ${fmtMs(q.in_requests_ms)} in ${fmtCount(q.in_requests)} queries` : `${fmtCount(q.count)} queries`,
        q.n_plus_one_requests ? 'warn' : null)
      : tile('DB time', '–', 'SQL queries: not captured yet', 'muted'),
    tile('Data losses', lostEvents ? fmtCount(lostEvents) : 'none', lostEvents ? 'events lost' : 'recording complete', lostEvents ? 'warn' : 'good'));
}

function slowest(eps, runId) {
  if (!eps.endpoints.length) return null;
  const max = Math.max(...eps.endpoints.map((e) => e.p99_ms), 0.001);
  return h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', null, 'Slowest endpoints (p99)'),
      h('a', { href: href('endpoints', { run: runId, sort: 'p99' }) }, 'All endpoints →')),
    h('table', { class: 'grid compact' },
      h('thead', null, h('tr', null, h('th', null, 'Endpoint'), h('th', { class: 'num' }, 'Requests'), h('th', { class: 'num' }, 'p99'), h('th', { class: 'bar-col' }, ''))),
      h('tbody', null, eps.endpoints.map((e) => {
        const bar = h('span', { class: 'bar' });
        bar.style.width = `${Math.max(2, (e.p99_ms / max) * 100)}%`;
        const params = { run: runId, method: e.method };
        if (e.is_route) params.route = e.route; else params.path = e.route;
        return h('tr', null,
          h('td', null, h('a', { href: href('requests', params), class: 'endpoint' },
            h('span', { class: `method m-${e.method}` }, e.method), h('span', { class: 'mono' }, e.route))),
          h('td', { class: 'num' }, fmtCount(e.count)),
          h('td', { class: 'num' }, fmtMs(e.p99_ms)),
          h('td', { class: 'bar-col' }, bar));
      }))));
}

// The graded scorecard of `timeglass score` (GET /api/score): each benchmark's
// figure, grade and the evidence behind it. Text only: evidence quotes paths.
function gradesCard(sc) {
  if (!sc) return null;
  return h('section', { class: 'card', 'aria-label': 'Graded scorecard' },
    h('div', { class: 'card-head' }, h('h2', null, 'Scorecard'),
      h('span', { class: 'muted' }, 'grades A–F: see `timeglass score --help`')),
    h('table', { class: 'grid compact' },
      h('thead', null, h('tr', null, h('th', null, 'Benchmark'), h('th', null, 'Figure'), h('th', null, 'Grade'), h('th', null, 'Evidence'))),
      h('tbody', null, sc.scorecard.map((it) => h('tr', null,
        h('td', null, it.name),
        h('td', { class: it.measured ? null : 'muted' }, it.figure),
        h('td', null, h('strong', null, it.grade || '–')),
        h('td', null, it.evidence.length
          ? h('ul', { class: 'plain' }, it.evidence.map((e) => h('li', { class: 'mono' }, e)))
          : h('span', { class: 'muted' }, it.note)))))));
}

function lossesCard(ov) {
  const lost = ov.losses.filter((l) => l.class === 'loss' && l.events > 0);
  if (!lost.length) return null;
  return h('section', { class: 'card', 'aria-label': 'Data losses' },
    h('h2', null, 'Data losses'),
    h('p', { class: 'muted' }, 'The recorder dropped these events rather than slow the app down; figures above miss them.'),
    h('table', { class: 'grid compact' },
      h('thead', null, h('tr', null, h('th', null, 'Kind'), h('th', { class: 'num' }, 'Events'), h('th', { class: 'num' }, 'Bytes'))),
      h('tbody', null, lost.map((l) => h('tr', { title: l.description },
        h('td', null, l.label, ' ', h('span', { class: 'muted mono' }, l.kind)),
        h('td', { class: 'num' }, fmtCount(l.events)), h('td', { class: 'num' }, fmtBytes(l.bytes)))))));
}

// What the stack sampler did not take by design (a rate lowered under its
// CPU budget, samples dropped on a race): information, not a loss.
function samplingNote(ov) {
  const text = ov.recording.sampling_text;
  if (!text) return null;
  const rows = ov.losses.filter((l) => l.class === 'sampling' && l.events > 0);
  return notice('info', 'Stack sampling', `${text[0].toUpperCase()}${text.slice(1)}.`,
    h('ul', { class: 'plain' }, rows.map((l) => h('li', null, `${fmtCount(l.events)} · ${l.description}`))));
}

export function mount(root, ctx) {
  const runId = ctx.runId;
  let charts = [];
  const body = h('div', { class: 'page overview' }, h('p', { class: 'loading' }, 'Loading…'));
  root.append(body);

  const draw = (ov, eps, sc) => {
    for (const c of charts) c.destroy();
    charts = [];
    const tl = ov.timeline;
    const t = tl.t;
    const toRange = (from, to) => navigate('requests', {
      run: runId, from: String(BigInt(Math.floor(from * 1000)) * 1000000n), to: String(BigInt(Math.ceil(to * 1000)) * 1000000n),
    });
    const sub = `per ${tl.bucket_s} s`;
    charts.push(timeChart({
      title: 'Throughput', subtitle: `${sub} · drag to see those requests`, x: t, onSelect: toRange,
      yFormat: (v) => fmtRps(v),
      series: [
        { label: 'req/s', values: tl.rps, kind: 'bars', color: seriesColor(0) },
        { label: '5xx/s', values: tl.n_5xx.map((v) => v / tl.bucket_s), color: '--bad' },
        { label: '4xx/s', values: tl.n_4xx.map((v) => v / tl.bucket_s), color: '--warn' },
      ],
    }));
    charts.push(timeChart({
      title: 'Latency', subtitle: `${sub} · log scale`, x: t, onSelect: toRange, yFormat: (v) => fmtMs(v), log: true,
      series: [
        { label: 'mean', values: tl.avg_ms, color: seriesColor(1), fill: true },
        { label: 'max', values: tl.max_ms, color: seriesColor(2) },
      ],
    }));
    for (const [i, p] of ov.processes.entries()) p.color = seriesColor(i + 3);
    const procs = ov.processes.filter((p) => p.series.t.length);
    if (procs.length) {
      // One x axis for all processes: the union of their sample times.
      const xs = [...new Set(procs.flatMap((p) => p.series.t))].sort((a, b) => a - b);
      const align = (p, key) => {
        const m = new Map(p.series.t.map((tt, i) => [tt, p.series[key][i]]));
        return xs.map((tt) => (m.has(tt) ? m.get(tt) : null));
      };
      charts.push(timeChart({
        title: 'CPU', subtitle: 'per process', x: xs, yFormat: (v) => fmtPct(v),
        series: procs.map((p) => ({ label: `pid ${p.pid}`, values: align(p, 'cpu_pct'), color: p.color })),
      }));
      charts.push(timeChart({
        title: 'Memory (RSS)', subtitle: 'per process', x: xs, yFormat: (v) => fmtBytes(v),
        series: procs.map((p) => ({ label: `pid ${p.pid}`, values: align(p, 'rss_bytes'), color: p.color, fill: procs.length === 1 })),
      }));
    }
    clear(body);
    append(body, [
      h('div', { class: 'page-head' }, h('h1', null, 'Overview'), runLine(ov.run)),
      scorecard(ov),
      ov.summary.count ? h('section', { class: 'charts' }, charts.map((c) => c.el))
        : notice('empty', 'No requests in this run yet', 'Send your app a request; it shows up here within a second.'),
      procs.length ? null : notice('info', 'CPU and memory: not sampled in this run', 'They are recorded by `timeglass run` for every process of the app.'),
      samplingNote(ov),
      h('div', { class: 'two-col' }, slowest(eps, runId), lossesCard(ov)),
      gradesCard(sc),
      ov.queries.available && ov.samples.available ? null : h('section', { class: 'card muted-card' },
        h('h2', null, 'Not captured yet'),
        h('ul', { class: 'plain' },
          ov.queries.available ? null : h('li', null, 'SQL queries: not captured yet'),
          ov.samples.available ? null : h('li', null, 'Flame graphs: not captured yet')))]);
  };

  const view = liveLoad(ctx, body, () => Promise.all([api('overview', { run: runId }),
    api('endpoints', { run: runId, sort: 'p99', limit: 6 }), api('score', { run: runId }).catch(() => null)]),
  ([ov, eps, sc]) => draw(ov, eps, sc), 1500);
  return {
    ...view,
    destroy() {
      view.destroy();
      for (const c of charts) c.destroy();
    },
  };
}
