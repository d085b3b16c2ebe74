// Pieces shared by the views: the "nothing to show" notices, the page
// heading with the run's description, and live reloading.

import { h, clear, notice, richText } from '../dom.js';
import { ApiError, isNoData } from '../api.js';
import { fmtDateTime, fmtDuration } from '../format.js';

const NO_DATA = 'No recordings yet: run `timeglass run -- uvicorn main:app`';

function noRecordings(path) {
  return notice('empty', 'No recordings yet',
    h('p', null, ...richText('Record your app with `timeglass run -- uvicorn main:app` and send it a few requests; this page lights up as they arrive.')),
    path ? h('p', { class: 'muted' }, 'Store: ', h('code', null, path)) : null);
}

/** A notice when the store cannot be shown (missing, newer schema, …), else
 * null. main.js shows it in place of any view: a view's mount() is only
 * called when there is a store to show. */
export function storeNotice(ctx) {
  const st = ctx.status && ctx.status.store;
  if (!st) return notice('error', 'The dashboard server does not answer', 'Is `timeglass ui` still running?');
  if (st.state === 'missing' || st.state === 'empty') return noRecordings(st.path);
  if (st.state !== 'ok') return notice('error', 'This store cannot be shown', h('p', null, ...richText(st.message)));
  if (!ctx.runs.length) return noRecordings(st.path);
  return null;
}

/** A notice for an API error. */
export function errorNotice(err, ctx) {
  if (isNoData(err)) return noRecordings(ctx && ctx.status && ctx.status.store.path);
  if (err instanceof ApiError && err.code === 'no_such_run') {
    return notice('error', 'No such run', h('p', null, err.message), h('p', null, h('a', { href: '#/overview' }, 'Show the latest run')));
  }
  return notice('error', 'Could not load this page', h('p', null, ...richText(err.message || String(err))));
}

export { NO_DATA };

/** One line that says which run this is. */
export function runLine(run) {
  if (!run) return null;
  const span = run.ended_ms ? (run.ended_ms - run.started_ms) / 1000 : null;
  return h('p', { class: 'run-line' },
    h('span', { class: 'run-id' }, `Run #${run.id}`),
    run.command ? h('code', { class: 'run-cmd', title: run.command }, run.command) : null,
    h('span', null, `started ${fmtDateTime(run.started_ms)}`),
    run.live ? h('span', { class: 'pill pill-live' }, 'recording') : span !== null ? h('span', null, `lasted ${fmtDuration(span)}`) : null,
    run.hostname ? h('span', { class: 'muted' }, run.hostname) : null,
    run.exit_status !== null && run.exit_status !== undefined ? h('span', { class: 'muted' }, `exit ${run.exit_status}`) : null);
}

/** Calls fn at most once per ms (trailing call kept). */
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return (...args) => {
    const wait = last + ms - Date.now();
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn(...args);
    }, Math.max(0, wait));
  };
}

/**
 * Loads a view's data of run ctx.runId now, and again (at most every ms)
 * while requests of that run arrive: fetch() resolves to the data, show()
 * draws it; an error puts a notice in box instead. Returns the view's
 * { destroy, live }.
 */
export function liveLoad(ctx, box, fetch, show, ms) {
  let destroyed = false;
  const load = async () => {
    try {
      const data = await fetch();
      if (!destroyed) show(data);
    } catch (e) {
      if (destroyed) return;
      clear(box);
      box.append(errorNotice(e, ctx));
    }
  };
  load();
  const reload = throttle(load, ms);
  return {
    destroy() { destroyed = true; },
    live(state) { if (state.latest_run === ctx.runId) reload(); },
  };
}
