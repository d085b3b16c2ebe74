// Request detail: the timing waterfall (request on the wire, the app's work,
// response on the wire), the request's context and headers, the exception,
// "copy as curl", and the SQL and flame-graph panels.

import { api } from '../api.js';
import { h, append, clear, notice } from '../dom.js';
import { fmtMs, fmtDateTime, fmtTime, fmtBytes, statusClass } from '../format.js';
import { href, navigate } from '../router.js';
import { errorNotice } from './common.js';
import { queriesTable, isHousekeeping } from './sql.js';
import { flameGraph } from './flame.js';

/** Single-quotes s for a POSIX shell. */
function shq(s) {
  return `'${String(s).replace(/'/g, "'\\''")}'`;
}

const SKIP_CURL = new Set(['host', 'content-length', 'connection', 'transfer-encoding', 'accept-encoding']);

export function curlCommand(req, headers) {
  const host = (headers.find(([n]) => n.toLowerCase() === 'host') || [])[1] || 'localhost:8000';
  const url = `http://${host}${req.path || '/'}${req.query_string ? `?${req.query_string}` : ''}`;
  const parts = ['curl'];
  if (req.method && req.method !== 'GET') parts.push('-X', shq(req.method));
  parts.push(shq(url));
  for (const [n, v] of headers) {
    if (!SKIP_CURL.has(n.toLowerCase())) parts.push('-H', shq(`${n}: ${v}`));
  }
  return parts.join(' ');
}

const WF_MAX_ROWS = 60; // query and call rows drawn in the waterfall

function wfRow(label, title, cls, offNs, lenNs, total, { mono = false, extra = null, dataset = null } = {}) {
  const seg = h('span', { class: `wf-seg ${cls}` });
  seg.style.marginLeft = `${Math.min(100, Math.max(0, (offNs / total) * 100))}%`;
  seg.style.width = `${Math.max(0.4, Math.min(100, (lenNs / total) * 100))}%`;
  return h('div', { class: 'wf-row', role: 'listitem', title, dataset },
    h('span', { class: `wf-label${mono ? ' mono' : ''}` }, label, extra),
    h('div', { class: 'wf-track' }, seg),
    h('span', { class: 'wf-val' }, fmtMs(lenNs / 1e6)));
}

function waterfall(d, queries, spans) {
  const t = d.timing;
  const total = t.total_ns || 1;
  const inner = [];
  for (const q of (queries && queries.rows) || []) {
    const house = isHousekeeping(q);
    const extra = q.n_plus_one ? h('span', { class: 'tag tag-bad' }, 'N+1') : q.duplicate ? h('span', { class: 'tag tag-warn' }, 'dup')
      : house ? h('span', { class: 'tag tag-house' }, 'hk') : q.executions > 1 ? h('span', { class: 'tag' }, `× ${q.executions}`) : null;
    inner.push({ at: q.start_offset_ms, row: () => {
      const row = wfRow(`SQL ${q.sql ? q.sql.trim().split(/\s+/)[0].toUpperCase() : ''}`.trim(),
        `${house ? '(housekeeping) ' : ''}${q.sql || ''}`, `wf-sql${q.n_plus_one ? ' wf-npo' : ''}`,
        q.start_offset_ms * 1e6, q.duration_ns, total, { extra, dataset: { query: String(q.id) } });
      if (house) row.classList.add('wf-house');
      return row;
    } });
  }
  for (const sp of (spans && spans.rows) || []) {
    inner.push({ at: sp.start_offset_ms, row: () => wfRow(`${sp.method || 'HTTP'} ${sp.host || ''}`, `${sp.method || ''} ${sp.host || ''}${sp.path || ''} → ${sp.status ?? sp.error ?? '?'}`,
      'wf-span', sp.start_offset_ms * 1e6, sp.duration_ns, total, { mono: true }) });
  }
  inner.sort((a, b) => a.at - b.at);
  const shown = inner.slice(0, WF_MAX_ROWS).map((x) => x.row());
  const more = inner.length > WF_MAX_ROWS ? h('p', { class: 'muted small' }, `… and ${inner.length - WF_MAX_ROWS} more (all are in the table below)`) : null;
  const legend = h('div', { class: 'wf-legend muted small' },
    t.available ? [h('span', { class: 'dot wf-in' }), 'request in', h('span', { class: 'dot wf-app' }), 'app', h('span', { class: 'dot wf-out' }), 'response out'] : null,
    queries && queries.rows.length ? [h('span', { class: 'dot wf-sql' }), 'SQL'] : null,
    spans && spans.rows.length ? [h('span', { class: 'dot wf-span' }), 'outbound HTTP'] : null);
  const totalRow = h('div', { class: 'wf-row wf-total' }, h('span', { class: 'wf-label' }, 'Total'), h('div', { class: 'wf-track' }), h('span', { class: 'wf-val' }, fmtMs(total / 1e6)));
  if (!t.available) {
    return h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Timeline'), legend),
      h('div', { class: 'waterfall', role: 'list' }, wfRow('App', 'The whole request', 'wf-app', 0, total, total), shown, totalRow), more,
      h('p', { class: 'muted' }, 'Wire timings were not recorded for this request (it was reported by the middleware, not seen on the socket).'));
  }
  return h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Timeline'), legend),
    h('div', { class: 'waterfall', role: 'list' },
      wfRow('Request in', 'Request bytes arriving, from the first byte to the last', 'wf-in', 0, t.wire_in_ns, total),
      wfRow('App', 'Your application handling the request, until the first response byte', 'wf-app', t.wire_in_ns, t.app_ns, total),
      shown,
      wfRow('Response out', 'Response bytes leaving, from the first byte to the last', 'wf-out', t.wire_in_ns + t.app_ns, t.wire_out_ns, total),
      totalRow), more);
}

function spansTable(spans) {
  return h('table', { class: 'grid compact spans-table' },
    h('thead', null, h('tr', null, h('th', { class: 'num' }, 'At'), h('th', null, 'Call'), h('th', null, 'Status'), h('th', { class: 'num' }, 'Duration'), h('th', { class: 'num' }, 'Sent / received'), h('th', null, 'Call site'))),
    h('tbody', null, spans.rows.map((sp) => h('tr', null,
      h('td', { class: 'num' }, `+${fmtMs(sp.start_offset_ms)}`),
      h('td', { class: 'mono wrap' }, h('span', { class: `method m-${sp.method}` }, sp.method || '?'), ' ', `${sp.tls ? 'https' : 'http'}://${sp.host || ''}${sp.path || ''}`),
      h('td', null, sp.status ? h('span', { class: `status ${statusClass(sp.status)}` }, String(sp.status)) : h('span', { class: 'bad' }, sp.error || '—')),
      h('td', { class: 'num' }, fmtMs(sp.duration_ms)),
      h('td', { class: 'num' }, `${fmtBytes(sp.request_bytes)} / ${fmtBytes(sp.response_bytes)}`),
      h('td', { class: 'mono small' }, sp.call_site || '–')))));
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

export function mount(root, ctx) {
  let destroyed = false;
  const page = h('div', { class: 'page detail' }, h('p', { class: 'loading' }, 'Loading…'));
  root.append(page);
  const back = () => (history.length > 1 ? history.back() : navigate('requests', { run: ctx.params.get('run') }));

  let flame = null;
  const id = encodeURIComponent(ctx.id);
  api(`requests/${id}`).then(async (d) => {
    const [queries, spans, samples] = await Promise.all([
      d.queries.available && d.queries.count ? api(`requests/${id}/queries`) : null,
      d.spans && d.spans.available && d.spans.count ? api(`requests/${id}/spans`) : null,
      d.samples.available && d.samples.count ? api('flame', { request: ctx.id }) : null,
    ]);
    return [d, queries, spans, samples];
  }).then(([d, queries, spans, samples]) => {
    if (destroyed) return;
    if (samples && samples.available && samples.total) flame = flameGraph(samples, { label: 'Flame graph of this request', top: true });
    const r = d.request;
    const curl = curlCommand(r, d.headers);
    const copyBtn = h('button', { type: 'button', class: 'primary' }, 'Copy as curl');
    const curlBox = h('pre', { class: 'curl mono', hidden: true }, curl);
    copyBtn.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(curl);
        copyBtn.textContent = 'Copied';
      } catch {
        copyBtn.textContent = 'Select and copy below';
      }
      curlBox.hidden = false;
      setTimeout(() => { copyBtn.textContent = 'Copy as curl'; }, 2000);
    });
    const target = `${r.path || ''}${r.query_string ? `?${r.query_string}` : ''}`;
    clear(page);
    append(page, [
      h('div', { class: 'page-head detail-head' },
        h('button', { type: 'button', class: 'link back', on: { click: back } }, '← Requests'),
        h('h1', { class: 'req-title' },
          h('span', { class: `method m-${r.method}` }, r.method || '?'),
          h('span', { class: 'mono path' }, target),
          h('span', { class: `status ${statusClass(r.status)}` }, r.status ?? 'no response'),
          h('span', { class: 'req-dur' }, fmtMs(r.duration_ms))),
        h('div', { class: 'head-actions' }, copyBtn)),
      curlBox,
      r.exception ? h('section', { class: 'card card-bad' }, h('h2', null, 'Exception'), h('pre', { class: 'exception mono' }, r.exception)) : null,
      r.error ? notice('error', 'Connection error', r.error) : null,
      waterfall(d, queries, spans),
      h('section', { class: 'card', id: 'sql' }, h('h2', null, 'SQL queries'),
        queries ? queriesTable(queries)
          : h('p', { class: 'muted' }, d.queries.available ? 'No SQL queries during this request.' : 'SQL queries: not captured yet')),
      spans ? h('section', { class: 'card' }, h('h2', null, 'Outbound HTTP calls'), spansTable(spans)) : null,
      h('section', { class: 'card', id: 'flame' },
        h('div', { class: 'card-head' }, h('h2', null, 'Flame graph'),
          r.route ? h('a', { href: href('flame', { run: r.run_id, route: `${r.method} ${r.route}` }) }, 'Whole route →') : null),
        flame ? flame.el
          : h('p', { class: 'muted' }, d.samples.available ? 'Flame graph: no samples during this request (it may have been shorter than the sampling interval).' : 'Flame graph: not captured yet')),
      h('div', { class: 'two-col' },
        h('section', { class: 'card' }, h('h2', null, 'Context'), kv([
          ['Started', `${fmtDateTime(r.start_ms)} (${fmtTime(r.start_ms)})`],
          ['Method', r.method],
          ['Path', h('span', { class: 'mono' }, r.path || '')],
          ['Query', r.query_string ? h('span', { class: 'mono' }, r.query_string) : null],
          ['Route', r.route ? h('a', { class: 'mono', href: href('requests', { run: r.run_id, route: r.route }) }, r.route) : h('span', { class: 'muted' }, 'unknown')],
          ['Status', String(r.status ?? '—')],
          ['HTTP', r.http_version],
          ['Client', r.client_addr],
          ['Forwarded for', r.forwarded_for],
          ['Process', `pid ${r.pid}${r.tid ? ` · tid ${r.tid}` : ''}`],
          ['Executable', r.process_cmdline || r.process_exe],
          ['Request size', fmtBytes(r.request_bytes)],
          ['Response size', fmtBytes(r.response_bytes)],
          ['Transport', r.transport],
          ['Flags', d.flags.length ? d.flags.join(', ') : null],
          ['Request id', `${r.id} (run ${r.run_id})`],
        ])),
        h('section', { class: 'card' }, h('h2', null, 'Headers'),
          d.headers.length
            ? h('table', { class: 'grid compact headers' }, h('tbody', null, d.headers.map(([k, v]) => h('tr', null, h('th', { scope: 'row', class: 'mono' }, k), h('td', { class: 'mono wrap' }, v)))))
            : h('p', { class: 'muted' }, 'No headers recorded.'),
          h('p', { class: 'muted small' }, 'Secret-bearing headers (Authorization, Cookie, …) are redacted by the recorder.')))]);
  }).catch((e) => {
    if (destroyed) return;
    clear(page);
    page.append(errorNotice(e, ctx), h('p', null, h('button', { type: 'button', class: 'link', on: { click: back } }, '← Back to requests')));
  });
  return { destroy() { destroyed = true; if (flame) flame.destroy(); } };
}
