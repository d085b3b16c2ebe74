// Endpoints: one row per route (or path, when the route is unknown) and
// method, sortable by any column; a row opens its requests, its "flame"
// link the route's merged flame graph. With SQL captured: queries per
// request, the share of time in the database and N+1 flags.

import { api } from '../api.js';
import { h, clear, notice } from '../dom.js';
import { fmtMs, fmtRate, fmtRps, fmtCount } from '../format.js';
import { href, navigate } from '../router.js';
import { liveLoad } from './common.js';

const COLUMNS = [
  { key: 'name', label: 'Endpoint', cls: '' },
  { key: 'count', label: 'Requests', cls: 'num' },
  { key: 'rps', label: 'req/s', cls: 'num' },
  { key: 'avg', label: 'Avg', cls: 'num' },
  { key: 'p50', label: 'p50', cls: 'num' },
  { key: 'p90', label: 'p90', cls: 'num' },
  { key: 'p99', label: 'p99', cls: 'num' },
  { key: 'max', label: 'Max', cls: 'num' },
  { key: '5xx', label: '5xx', cls: 'num' },
  { key: '4xx', label: '4xx', cls: 'num' },
];

// Shown when the run has SQL queries.
const SQL_COLUMNS = [
  { key: 'queries', label: 'Queries/req', cls: 'num', title: 'SQL queries per request' },
  { key: 'db', label: 'DB time', cls: 'num', title: 'Share of the requests\' time spent in SQL queries' },
  { key: 'n_plus_one', label: 'N+1', cls: 'num', title: 'Requests with an N+1 query pattern' },
];

function requestsLink(e, runId) {
  const params = { run: runId, method: e.method };
  if (e.is_other) return null;
  if (e.is_route) params.route = e.route; else params.path = e.route;
  return params;
}

export function mount(root, ctx) {
  const runId = ctx.runId;
  const sort = ctx.params.get('sort') || 'count';
  const dir = ctx.params.get('dir') || (sort === 'name' ? 'asc' : 'desc');
  let data = null;
  const filter = h('input', {
    type: 'search', class: 'filter-input', placeholder: 'Filter endpoints…', 'aria-label': 'Filter endpoints', 'data-search': '',
    value: ctx.params.get('filter') || '',
  });
  const tableBox = h('div', { class: 'table-box' }, h('p', { class: 'loading' }, 'Loading…'));
  const count = h('span', { class: 'muted' });
  root.append(h('div', { class: 'page endpoints' },
    h('div', { class: 'page-head' }, h('h1', null, 'Endpoints'), count),
    h('div', { class: 'toolbar' }, filter),
    tableBox));

  const setSort = (key) => {
    const nextDir = key === sort ? (dir === 'desc' ? 'asc' : 'desc') : key === 'name' ? 'asc' : 'desc';
    navigate('endpoints', { run: ctx.params.get('run'), sort: key, dir: nextDir, filter: filter.value });
  };

  const draw = () => {
    if (!data) return;
    const needle = filter.value.trim().toLowerCase();
    const rows = data.endpoints.filter((e) => !needle || `${e.method} ${e.route}`.toLowerCase().includes(needle));
    count.textContent = `${fmtCount(rows.length)} of ${fmtCount(data.total)} endpoint${data.total === 1 ? '' : 's'}`;
    clear(tableBox);
    if (!data.endpoints.length) {
      tableBox.append(notice('empty', 'No requests in this run yet', 'Endpoints appear here as requests arrive.'));
      return;
    }
    const maxP99 = Math.max(...rows.map((e) => e.p99_ms), 0.001);
    const sql = data.endpoints.length && data.endpoints[0].queries_per_request !== undefined;
    const th = (c) => {
      const active = c.key === sort;
      return h('th', { class: c.cls, scope: 'col', title: c.title || null, 'aria-sort': active ? (dir === 'asc' ? 'ascending' : 'descending') : null },
        h('button', { type: 'button', class: 'sort', on: { click: () => setSort(c.key) } },
          c.label, active ? h('span', { class: 'sort-arrow', 'aria-hidden': 'true' }, dir === 'asc' ? '▲' : '▼') : null));
    };
    const head = h('tr', null, COLUMNS.map(th), sql ? SQL_COLUMNS.map(th)
      : h('th', { class: 'num muted', scope: 'col', title: 'SQL queries: not captured yet' }, 'SQL'));
    const body = h('tbody', null, rows.map((e) => {
      const params = requestsLink(e, runId);
      const open = () => params && navigate('requests', params);
      const bar = h('span', { class: 'bar' });
      bar.style.width = `${Math.max(2, (e.p99_ms / maxP99) * 100)}%`;
      return h('tr', {
        tabindex: '0', 'data-row': '', class: params ? 'clickable' : '',
        on: { click: (ev) => { if (!(ev.target instanceof HTMLAnchorElement)) open(); }, keydown: (ev) => { if (ev.key === 'Enter') open(); } },
      },
      h('td', null, params
        ? [h('a', { href: href('requests', params), class: 'endpoint', tabindex: '-1' },
          h('span', { class: `method m-${e.method}` }, e.method || '?'),
          h('span', { class: 'mono' }, e.route), e.is_route ? null : h('span', { class: 'tag', title: 'No route template was recorded: grouped by path' }, 'path')),
        h('a', {
          class: 'flame-link', href: href('flame', { run: runId, route: `${e.method} ${e.route}` }), tabindex: '-1',
          title: 'Flame graph of this endpoint', 'aria-label': `Flame graph of ${e.method} ${e.route}`,
        }, 'flame')]
        : h('span', { class: 'endpoint muted' }, e.route, ' ', h('span', { class: 'tag' }, 'more endpoints than shown'))),
      h('td', { class: 'num' }, fmtCount(e.count)),
      h('td', { class: 'num' }, fmtRps(e.rps)),
      h('td', { class: 'num' }, fmtMs(e.avg_ms)),
      h('td', { class: 'num' }, fmtMs(e.p50_ms)),
      h('td', { class: 'num' }, fmtMs(e.p90_ms)),
      h('td', { class: 'num p99' }, h('span', { class: 'p99-val' }, fmtMs(e.p99_ms)), bar),
      h('td', { class: 'num' }, fmtMs(e.max_ms)),
      h('td', { class: `num${e.n_5xx ? ' bad' : ''}` }, fmtRate(e.rate_5xx)),
      h('td', { class: `num${e.n_4xx ? ' warn' : ''}` }, fmtRate(e.rate_4xx)),
      sql ? [h('td', { class: 'num' }, e.queries ? e.queries_per_request.toFixed(e.queries_per_request < 10 ? 1 : 0) : '0'),
        h('td', { class: 'num db-share', title: `${fmtMs(e.db_ms)} in SQL` }, e.queries ? fmtRate(e.db_ms_share) : '–'),
        h('td', { class: 'num' }, e.n_plus_one ? h('span', { class: 'tag tag-bad', title: `${fmtCount(e.n_plus_one)} request(s) with an N+1 query pattern` }, `N+1 × ${fmtCount(e.n_plus_one)}`) : '–')]
        : h('td', { class: 'num muted' }, '–'));
    }));
    tableBox.append(h('table', { class: 'grid sortable' }, h('thead', null, head), body));
  };

  filter.addEventListener('input', draw);
  return liveLoad(ctx, tableBox, () => api('endpoints', { run: runId, sort, dir }), (d) => {
    data = d;
    draw();
  }, 2000);
}
