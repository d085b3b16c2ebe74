// Request detail: the timing waterfall (request on the wire, the app's work,
// response on the wire), the request's context and headers, the exception,
// "copy as curl", and the SQL and flame-graph panels.

import { api } from '../api.js';
import { h, append, clear, notice } from '../dom.js';
import { fmtMs, fmtDateTime, fmtTime, fmtBytes, statusClass } from '../format.js';
import { href, navigate } from '../router.js';
import { storeNotice, errorNotice } from './common.js';

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

function waterfall(d) {
  const t = d.timing;
  const total = t.total_ns || 1;
  if (!t.available) {
    return h('section', { class: 'card' }, h('h2', null, 'Timeline'),
      h('div', { class: 'waterfall' }, h('div', { class: 'wf-row' },
        h('span', { class: 'wf-label' }, 'Total'),
        h('div', { class: 'wf-track' }, h('span', { class: 'wf-seg wf-app full' })),
        h('span', { class: 'wf-val' }, fmtMs(t.total_ns / 1e6)))),
      h('p', { class: 'muted' }, 'Wire timings were not recorded for this request (it was reported by the middleware, not seen on the socket).'));
  }
  const segs = [
    ['Request in', 'Request bytes arriving, from the first byte to the last', 'wf-in', 0, t.wire_in_ns],
    ['App', 'Your application handling the request, until the first response byte', 'wf-app', t.wire_in_ns, t.app_ns],
    ['Response out', 'Response bytes leaving, from the first byte to the last', 'wf-out', t.wire_in_ns + t.app_ns, t.wire_out_ns],
  ];
  return h('section', { class: 'card' }, h('h2', null, 'Timeline'),
    h('div', { class: 'waterfall', role: 'list' }, segs.map(([label, title, cls, off, len]) => {
      const seg = h('span', { class: `wf-seg ${cls}` });
      seg.style.marginLeft = `${(off / total) * 100}%`;
      seg.style.width = `${Math.max(0.4, (len / total) * 100)}%`;
      return h('div', { class: 'wf-row', role: 'listitem', title },
        h('span', { class: 'wf-label' }, label),
        h('div', { class: 'wf-track' }, seg),
        h('span', { class: 'wf-val' }, fmtMs(len / 1e6)));
    }),
    h('div', { class: 'wf-row wf-total' }, h('span', { class: 'wf-label' }, 'Total'), h('div', { class: 'wf-track' }), h('span', { class: 'wf-val' }, fmtMs(total / 1e6)))));
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

export function mount(root, ctx) {
  const n = storeNotice(ctx);
  if (n) {
    root.append(n);
    return null;
  }
  let destroyed = false;
  const page = h('div', { class: 'page detail' }, h('p', { class: 'loading' }, 'Loading…'));
  root.append(page);
  const back = () => (history.length > 1 ? history.back() : navigate('requests', { run: ctx.params.get('run') }));

  api(`requests/${encodeURIComponent(ctx.id)}`).then((d) => {
    if (destroyed) return;
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
      waterfall(d),
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
          h('p', { class: 'muted small' }, 'Secret-bearing headers (Authorization, Cookie, …) are redacted by the recorder.'))),
      h('div', { class: 'two-col' },
        h('section', { class: 'card' }, h('h2', null, 'SQL queries'),
          d.queries.available && d.queries.rows.length
            ? h('ul', { class: 'plain' }, d.queries.rows.map((q) => h('li', { class: 'mono' }, q.sql || '')))
            : h('p', { class: 'muted' }, d.queries.available ? 'No SQL queries during this request.' : 'SQL queries: not captured yet')),
        h('section', { class: 'card' }, h('h2', null, 'Flame graph'),
          h('p', { class: 'muted' }, d.samples.available ? 'Flame graph: no samples during this request.' : 'Flame graph: not captured yet')))]);
  }).catch((e) => {
    if (destroyed) return;
    clear(page);
    page.append(errorNotice(e, ctx), h('p', null, h('button', { type: 'button', class: 'link', on: { click: back } }, '← Back to requests')));
  });
  return { destroy() { destroyed = true; } };
}
