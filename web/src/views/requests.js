// Requests: the filterable, sortable list of a run's requests, paged by
// keyset ("load more" and infinite scroll); new requests appear live at the
// top while sorted by newest first.

import { api } from '../api.js';
import { h, clear, notice } from '../dom.js';
import { fmtMs, fmtTime, fmtBytes, statusClass, fmtCount } from '../format.js';
import { href, navigate } from '../router.js';
import { errorNotice } from './common.js';

const FILTER_KEYS = ['route', 'path', 'method', 'status', 'min_ms', 'q', 'from', 'to'];
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const PAGE = 100;

const RANGES = [
  ['', 'Any time'],
  ['60', 'Last minute'],
  ['300', 'Last 5 minutes'],
  ['900', 'Last 15 minutes'],
  ['3600', 'Last hour'],
];

function nsToMs(ns) {
  return Number(BigInt(ns) / 1000000n);
}

function timeChip(from, to) {
  const a = from ? fmtTime(nsToMs(from)) : '…';
  const b = to ? fmtTime(nsToMs(to)) : '…';
  return `${a} – ${b}`;
}

export function mount(root, ctx) {
  const runId = ctx.runId;
  const p = ctx.params;
  const f = Object.fromEntries(FILTER_KEYS.map((k) => [k, p.get(k) || '']));
  const sort = p.get('sort') === 'duration' ? 'duration' : 'start';
  const dir = p.get('dir') === 'asc' ? 'asc' : 'desc';
  const run = ctx.runs.find((r) => r.id === runId);

  let destroyed = false;
  let next = null;
  let loading = false;
  // A search by path text stops on the server's budget and says how far
  // it read ("partial"); the list follows on by itself until a page is
  // full, the list ends or the user stops it.
  let searchedTo = null; // scanned_to_ms of the last partial answer, while searching
  let stopSearch = false;
  let watermark = ctx.state ? ctx.state.max_request_id : 0;
  const seen = new Set();
  let shown = 0;

  // ---- filter bar ----
  const go = (changes) => {
    const params = { run: p.get('run'), ...f, sort, dir, ...changes };
    navigate('requests', params);
  };
  const routeInput = h('input', { type: 'text', list: 'route-list', value: f.route, placeholder: 'any route', 'aria-label': 'Route', class: 'w-route' });
  const routeList = h('datalist', { id: 'route-list' });
  const methodSel = h('select', { 'aria-label': 'Method' }, h('option', { value: '' }, 'any method'),
    METHODS.map((m) => h('option', { value: m, selected: f.method === m }, m)));
  const statusSel = h('select', { 'aria-label': 'Status' }, h('option', { value: '' }, 'any status'),
    ['2xx', '3xx', '4xx', '5xx'].map((s) => h('option', { value: s, selected: f.status === s }, s)),
    f.status && !/^[2-5]xx$/.test(f.status) ? h('option', { value: f.status, selected: true }, f.status) : null);
  const minInput = h('input', { type: 'number', min: '0', step: 'any', value: f.min_ms, placeholder: '0', 'aria-label': 'Minimum duration in milliseconds', class: 'w-num' });
  const qInput = h('input', { type: 'search', value: f.q, placeholder: 'path contains…  ( / )', 'aria-label': 'Path contains', 'data-search': '', class: 'w-q' });
  const rangeSel = h('select', { 'aria-label': 'Time range' }, RANGES.map(([v, l]) => h('option', { value: v }, l)));
  const form = h('form', { class: 'filters', role: 'search', on: { submit: (e) => { e.preventDefault(); apply(); } } },
    h('label', null, h('span', null, 'Route'), routeInput, routeList),
    h('label', null, h('span', null, 'Method'), methodSel),
    h('label', null, h('span', null, 'Status'), statusSel),
    h('label', null, h('span', null, 'Min ms'), minInput),
    h('label', { class: 'grow' }, h('span', null, 'Path'), qInput),
    h('label', null, h('span', null, 'Time'), rangeSel),
    h('button', { type: 'submit', class: 'primary' }, 'Apply'));
  function apply() {
    let from = f.from;
    let to = f.to;
    if (rangeSel.value) {
      const ref = run && run.ended_unix_ns && !run.live ? BigInt(run.ended_unix_ns) : BigInt(Date.now()) * 1000000n;
      from = String(ref - BigInt(rangeSel.value) * 1000000000n);
      to = '';
    }
    go({ route: routeInput.value.trim(), method: methodSel.value, status: statusSel.value, min_ms: minInput.value, q: qInput.value, from, to });
  }
  for (const el of [methodSel, statusSel, rangeSel]) el.addEventListener('change', apply);

  const chips = h('div', { class: 'chips' },
    f.path ? h('button', { type: 'button', class: 'chip', title: 'Remove this filter', on: { click: () => go({ path: '' }) } }, 'path = ', h('span', { class: 'mono' }, f.path), ' ✕') : null,
    f.from || f.to ? h('button', { type: 'button', class: 'chip', title: 'Remove this filter', on: { click: () => go({ from: '', to: '' }) } }, `time ${timeChip(f.from, f.to)} ✕`) : null,
    FILTER_KEYS.some((k) => f[k]) ? h('button', { type: 'button', class: 'link', on: { click: () => navigate('requests', { run: p.get('run') }) } }, 'Clear all filters') : null);

  // ---- table ----
  const sortButton = (key, label) => {
    const active = sort === key;
    return h('th', { class: key === 'duration' ? 'num' : '', scope: 'col', 'aria-sort': active ? (dir === 'asc' ? 'ascending' : 'descending') : null },
      h('button', { type: 'button', class: 'sort', on: { click: () => go({ sort: key, dir: active && dir === 'desc' ? 'asc' : 'desc' }) } },
        label, active ? h('span', { class: 'sort-arrow', 'aria-hidden': 'true' }, dir === 'asc' ? '▲' : '▼') : null));
  };
  const tbody = h('tbody');
  const table = h('table', { class: 'grid requests-table' },
    h('thead', null, h('tr', null, sortButton('start', 'Time'), h('th', { scope: 'col' }, 'Method'), h('th', { scope: 'col' }, 'Path'),
      h('th', { scope: 'col' }, 'Status'), sortButton('duration', 'Duration'), h('th', { scope: 'col', class: 'num' }, 'Size'), h('th', { scope: 'col', class: 'num' }, 'PID'))),
    tbody);
  const more = h('button', { type: 'button', class: 'more', on: { click: () => loadPage() } }, 'Load more');
  const footer = h('div', { class: 'list-footer' });
  const countText = h('span', { class: 'muted' });
  const newNote = h('div', { class: 'new-note', hidden: true });
  const box = h('div', { class: 'table-box' }, table);
  root.append(h('div', { class: 'page requests' },
    h('div', { class: 'page-head' }, h('h1', null, 'Requests'), countText),
    form, chips, newNote, box, footer));

  const row = (r, fresh) => {
    const open = () => navigate(`requests/${r.id}`, { run: runId });
    const dur = h('td', { class: 'num dur' }, fmtMs(r.duration_ms));
    const tr = h('tr', {
      tabindex: '0', 'data-row': '', 'data-id': String(r.id), class: `clickable${fresh ? ' fresh' : ''}`,
      on: { click: (e) => { if (!(e.target instanceof HTMLAnchorElement)) open(); }, keydown: (e) => { if (e.key === 'Enter') open(); } },
    },
    h('td', { class: 'mono nowrap' }, fmtTime(r.start_ms)),
    h('td', null, h('span', { class: `method m-${r.method}` }, r.method || '?')),
    h('td', { class: 'path-cell' },
      h('a', { href: href(`requests/${r.id}`, { run: runId }), class: 'mono path', tabindex: '-1' }, r.path || '', r.query_string ? h('span', { class: 'query' }, `?${r.query_string}`) : null),
      r.route && r.route !== r.path ? h('span', { class: 'route' }, r.route) : null,
      r.exception ? h('span', { class: 'tag tag-bad' }, 'exception') : null,
      r.error ? h('span', { class: 'tag tag-warn', title: r.error }, r.error) : null),
    h('td', null, h('span', { class: `status ${statusClass(r.status)}` }, r.status ?? '—')),
    dur,
    h('td', { class: 'num' }, fmtBytes(r.response_bytes)),
    h('td', { class: 'num muted' }, r.pid));
    return tr;
  };

  const params = (extra) => ({ run: runId, ...f, sort, dir, limit: PAGE, ...extra });

  // "back to 12:03:04" (newest first), "down to 120 ms" (slowest first), ...
  const searchPlace = (ms) => (sort === 'start'
    ? `${dir === 'desc' ? 'back' : 'up'} to ${fmtTime(ms)}`
    : `${dir === 'desc' ? 'down' : 'up'} to ${fmtMs(ms)}`);
  const stopButton = h('button', { type: 'button', class: 'link', on: { click: () => { stopSearch = true; } } }, 'Stop');
  const searchNote = h('span', { class: 'muted search-note', role: 'status' });

  const setFooter = () => {
    clear(footer);
    countText.textContent = `${fmtCount(shown)} shown${next ? '' : shown ? ', all loaded' : ''}`;
    if (searchedTo !== null && next) {
      // Stopped part-way (by the user): say how far the search got.
      searchNote.textContent = `Searched ${searchPlace(searchedTo)}. `;
      box.hidden = !shown;
      more.textContent = 'Search further';
      footer.append(searchNote, more);
      return;
    }
    more.textContent = 'Load more';
    if (!shown) {
      footer.append(FILTER_KEYS.some((k) => f[k])
        ? notice('empty', 'No requests match these filters', 'Loosen a filter, or clear them all.')
        : notice('empty', 'No requests in this run yet', 'They appear here, live, as your app serves them.'));
      box.hidden = true;
      return;
    }
    box.hidden = false;
    if (next) footer.append(more, sentinel);
  };

  async function loadPage() {
    if (loading || destroyed) return;
    loading = true;
    more.disabled = true;
    more.textContent = 'Loading…';
    stopSearch = false;
    try {
      let got = 0;
      for (;;) {
        const first = next === null && shown === 0 && searchedTo === null;
        const res = await api('requests', params(next ? { after: next } : {}));
        if (destroyed) return;
        if (first) watermark = Math.max(watermark, ...res.rows.map((r) => r.id));
        for (const r of res.rows) {
          if (seen.has(r.id)) continue;
          seen.add(r.id);
          tbody.append(row(r, false));
          shown++;
          got++;
        }
        next = res.next;
        searchedTo = res.partial && next ? res.scanned_to_ms : null;
        if (searchedTo === null || got >= PAGE || stopSearch) break;
        // Still searching: show what was found so far and how far back.
        box.hidden = !shown;
        countText.textContent = `${fmtCount(shown)} shown`;
        searchNote.textContent = `Searching ${searchPlace(searchedTo)}… `;
        clear(footer);
        footer.append(searchNote, stopButton);
      }
      if (!stopSearch) searchedTo = null;
    } catch (e) {
      if (destroyed) return;
      clear(footer);
      footer.append(errorNotice(e, ctx));
      loading = false;
      return;
    } finally {
      more.disabled = false;
      more.textContent = 'Load more';
      stopSearch = false;
    }
    loading = false;
    setFooter();
  }

  const sentinel = h('div', { class: 'sentinel', 'aria-hidden': 'true' });
  const io = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && next) loadPage();
  }, { rootMargin: '400px' });
  io.observe(sentinel);

  // Route suggestions for the route box.
  api('endpoints', { run: runId, sort: 'count', limit: 500 }).then((eps) => {
    const routes = [...new Set(eps.endpoints.filter((e) => e.is_route).map((e) => e.route))];
    for (const r of routes) routeList.append(h('option', { value: r }));
  }).catch(() => {});

  loadPage();

  let pendingLive = false;
  async function live(state) {
    if (state.latest_run !== runId || destroyed) return;
    if (sort !== 'start' || dir !== 'desc' || (f.to && BigInt(f.to) < BigInt(Date.now()) * 1000000n)) {
      newNote.hidden = false;
      clear(newNote);
      newNote.append('New requests arrived. ', h('button', { type: 'button', class: 'link', on: { click: () => go({}) } }, 'Reload the list'));
      return;
    }
    if (pendingLive) return;
    pendingLive = true;
    try {
      const mark = watermark;
      const res = await api('requests', params({ newer_than: mark, limit: 200 }));
      if (destroyed) return;
      watermark = Math.max(watermark, state.max_request_id);
      const fresh = res.rows.filter((r) => !seen.has(r.id));
      for (const r of fresh.reverse()) {
        seen.add(r.id);
        tbody.prepend(row(r, true));
        shown++;
      }
      if (fresh.length) setFooter();
    } catch {
      /* the next event retries */
    } finally {
      pendingLive = false;
    }
  }

  return {
    destroy() {
      destroyed = true;
      io.disconnect();
    },
    live,
  };
}
