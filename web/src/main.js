// The dashboard's single page: shell (run picker, theme, banner, keyboard),
// hash routing to the views, and live updates from /api/events.

import 'uplot/dist/uPlot.min.css';
import './app.css';

import { api, ApiError } from './api.js';
import { h, clear, richText } from './dom.js';
import { fmtDateTime, fmtCount } from './format.js';
import { parseRoute, href, navigate } from './router.js';
import { storeNotice } from './views/common.js';
import * as overview from './views/overview.js';
import * as endpoints from './views/endpoints.js';
import * as requests from './views/requests.js';
import * as detail from './views/detail.js';
import * as routeFlame from './views/routeflame.js';
import * as compare from './views/compare.js';
import * as bench from './views/bench.js';

const views = { overview, endpoints, requests, detail, flame: routeFlame, compare, bench };

const app = {
  status: null, // /api/status
  runs: [], // /api/runs
  state: null, // last event from /api/events
  current: null, // the mounted view: {destroy(), live?(state)}
  routeKey: '',
};

const $ = (id) => document.getElementById(id);

// ---- theme ----

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  const dark = effectiveTheme() === 'dark';
  const btn = $('theme-toggle');
  btn.textContent = dark ? '☀' : '☾';
  btn.setAttribute('aria-pressed', String(dark));
}

function effectiveTheme() {
  return document.documentElement.dataset.theme
    || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
}

function toggleTheme() {
  const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
  try { localStorage.setItem('timeglass-theme', next); } catch { /* private mode */ }
  applyTheme(next);
  render(true); // charts take their colours when drawn
}

// ---- store state, runs and the banner ----

function setBanner(kind, text) {
  const b = $('banner');
  clear(b);
  if (!text) {
    b.hidden = true;
    return;
  }
  b.className = `banner banner-${kind}`;
  b.append(...[].concat(richText(text)));
  b.hidden = false;
}

async function loadStatus() {
  try {
    app.status = await api('status');
  } catch (e) {
    app.status = null;
    setBanner('error', e.message);
    return;
  }
  const st = app.status.store;
  if (st.state === 'ok' || st.state === 'missing' || st.state === 'empty') setBanner(null, null);
  else setBanner('error', st.message);
}

async function loadRuns() {
  const sel = $('run-select');
  if (!app.status || app.status.store.state !== 'ok') {
    app.runs = [];
  } else {
    try {
      app.runs = (await api('runs')).runs;
    } catch (e) {
      app.runs = [];
    }
  }
  clear(sel);
  if (!app.runs.length) {
    sel.append(h('option', { value: '' }, 'no runs yet'));
    sel.disabled = true;
    return;
  }
  sel.disabled = false;
  sel.append(h('option', { value: '' }, 'Latest run'));
  for (const r of app.runs) {
    const label = `#${r.id} · ${fmtDateTime(r.started_ms)} · ${fmtCount(r.requests)} req${r.live ? ' · live' : ''}`;
    sel.append(h('option', { value: String(r.id), title: r.command || '' }, label));
  }
  sel.value = parseRoute().params.get('run') || '';
}

/** The run the views show: ?run= or the newest. */
function currentRun(params) {
  const p = params.get('run');
  if (p) return Number(p);
  return app.runs.length ? app.runs[0].id : null;
}

function updateLive() {
  const { params } = parseRoute();
  const runId = currentRun(params);
  const run = app.runs.find((r) => r.id === runId);
  const live = app.state ? app.state.live && app.state.latest_run === runId : run && run.live;
  $('live-badge').hidden = !live;
}

// ---- views ----

function render(force = false) {
  const route = parseRoute();
  const key = location.hash;
  if (!force && key === app.routeKey && app.current) return;
  app.routeKey = key;
  for (const a of document.querySelectorAll('.tabs a')) {
    const active = a.dataset.view === route.view || (route.view === 'detail' && a.dataset.view === 'requests') || (route.view === 'flame' && a.dataset.view === 'endpoints');
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
    const run = route.params.get('run');
    a.setAttribute('href', href(a.dataset.view, run ? { run } : {}));
  }
  const sel = $('run-select');
  if (!sel.disabled) sel.value = route.params.get('run') || '';
  if (app.current) app.current.destroy();
  const main = $('view');
  clear(main);
  const ctx = {
    status: app.status,
    runs: app.runs,
    runId: currentRun(route.params),
    params: route.params,
    id: route.id,
    state: app.state,
  };
  // Every view needs a store it can show; when there is none, it is said instead.
  const notice = storeNotice(ctx);
  if (notice) main.append(notice);
  app.current = (!notice && views[route.view].mount(main, ctx)) || { destroy() {} };
  updateLive();
}

// ---- live updates ----

function connectEvents() {
  const es = new EventSource('/api/events');
  es.addEventListener('state', async (ev) => {
    let s;
    try { s = JSON.parse(ev.data); } catch { return; }
    // After a refused stream, the first event is compared with what the
    // page shows (loaded from /api/status), not taken as the baseline.
    const prev = app.state || (app.streamMissed && app.status ? stateOfStatus(app.status) : null);
    app.streamMissed = false;
    app.state = s;
    if (!prev || prev.state !== s.state || prev.runs !== s.runs || prev.latest_run !== s.latest_run) {
      await loadStatus();
      await loadRuns();
      if (prev) render(true);
    } else if (prev.live !== s.live) {
      await loadRuns();
    }
    updateLive();
    if (prev && app.current && app.current.live && prev.max_request_id !== s.max_request_id) {
      app.current.live(s);
    }
  });
  es.addEventListener('open', () => setOffline(false));
  es.addEventListener('error', () => {
    if (es.readyState !== EventSource.CLOSED) {
      setOffline(es.readyState !== EventSource.OPEN);
      return;
    }
    // The browser gives up on a stream refused with an HTTP error: the
    // server answers 503 "too_many_streams" while its live streams are all
    // taken (other tabs or clients). Say so when the API still answers, and
    // try again later.
    es.close();
    if (!app.state) app.streamMissed = true;
    streamRefused();
    setTimeout(connectEvents, STREAM_RETRY_MS);
  });
}

const STREAM_RETRY_MS = 10000; // the server's Retry-After

function stateOfStatus(st) {
  return { state: st.store.state, runs: st.runs, latest_run: st.latest_run || 0, live: st.live,
    max_request_id: st.max_request_id };
}

async function streamRefused() {
  let up = false;
  try {
    await api('status');
    up = true;
  } catch { /* the server is gone */ }
  offline = true;
  setBanner('error', up ? 'Live updates paused: the dashboard serves a limited number of live streams and all are '
    + 'in use (close other dashboard tabs); retrying…' : 'Lost the connection to `timeglass ui`; retrying…');
}

let offline = false;
function setOffline(off) {
  if (off === offline) return;
  offline = off;
  if (off) setBanner('error', 'Lost the connection to `timeglass ui`; retrying…');
  else loadStatus();
}

// ---- keyboard ----

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ['INPUT', 'SELECT', 'TEXTAREA'].includes(target.tagName));
}

function moveRow(delta) {
  const rows = [...document.querySelectorAll('#view [data-row]')];
  if (!rows.length) return;
  const i = rows.indexOf(document.activeElement);
  const next = rows[Math.max(0, Math.min(rows.length - 1, i < 0 ? 0 : i + delta))];
  next.focus();
  next.scrollIntoView({ block: 'nearest' });
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const help = $('help');
  if (e.key === 'Escape' && !typing(e.target) && !help.open) {
    if (['detail', 'flame'].includes(parseRoute().view)) {
      e.preventDefault();
      history.length > 1 ? history.back() : navigate('requests');
    }
    return;
  }
  if (typing(e.target)) return;
  const run = parseRoute().params.get('run');
  const keep = run ? { run } : {};
  switch (e.key) {
    case '1': navigate('overview', keep); break;
    case '2': navigate('endpoints', keep); break;
    case '3': navigate('requests', keep); break;
    case '4': navigate('compare', keep); break;
    case '5': navigate('bench', keep); break;
    case 't': toggleTheme(); break;
    case '?': help.open ? help.close() : help.showModal(); break;
    case 'j': moveRow(1); break;
    case 'k': moveRow(-1); break;
    case '/': {
      const q = document.querySelector('#view [data-search]');
      if (q) { e.preventDefault(); q.focus(); q.select(); }
      else { e.preventDefault(); navigate('requests', keep); }
      break;
    }
    default: return;
  }
}

// ---- start ----

async function start() {
  let saved = null;
  try { saved = localStorage.getItem('timeglass-theme'); } catch { /* private mode */ }
  applyTheme(saved);
  $('theme-toggle').addEventListener('click', toggleTheme);
  $('help-toggle').addEventListener('click', () => $('help').showModal());
  $('run-select').addEventListener('change', (e) => {
    const route = parseRoute();
    const view = route.view === 'detail' ? 'requests' : route.view === 'flame' ? 'endpoints' : route.view;
    const params = view === 'requests' ? {} : Object.fromEntries(route.params);
    params.run = e.target.value;
    navigate(view, params);
  });
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
    applyTheme(document.documentElement.dataset.theme);
    render(true);
  });
  window.addEventListener('hashchange', () => render());
  document.addEventListener('keydown', onKey);
  await loadStatus();
  await loadRuns();
  render(true);
  connectEvents();
}

export { ApiError };
start();
