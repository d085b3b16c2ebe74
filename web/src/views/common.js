// Pieces shared by the views: the "nothing to show" notices and the page
// heading with the run's description.

import { h, notice, richText } from '../dom.js';
import { ApiError, isNoData } from '../api.js';
import { fmtDateTime, fmtDuration } from '../format.js';

const NO_DATA = 'No recordings yet: run `timeglass run -- uvicorn main:app`';

function noRecordings(path) {
  return notice('empty', 'No recordings yet',
    h('p', null, ...richText('Record your app with `timeglass run -- uvicorn main:app` and send it a few requests; this page lights up as they arrive.')),
    path ? h('p', { class: 'muted' }, 'Store: ', h('code', null, path)) : null);
}

/** A notice when the store cannot be shown (missing, newer schema, …), else null. */
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
