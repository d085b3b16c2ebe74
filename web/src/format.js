// Number, time and size formatting for the dashboard.

const nf = new Intl.NumberFormat();

export function fmtCount(n) {
  return n === null || n === undefined ? '–' : nf.format(n);
}

/** Milliseconds with a unit that keeps 3 significant digits. */
export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  if (ms === 0) return '0';
  if (ms < 1) return `${(ms * 1000).toFixed(ms < 0.01 ? 1 : 0)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${ms.toFixed(0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

export function fmtRate(r) {
  if (r === null || r === undefined) return '–';
  if (r === 0) return '0%';
  const p = r * 100;
  return `${p < 0.1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : p.toFixed(0)}%`;
}

export function fmtRps(x) {
  if (x === null || x === undefined) return '–';
  return x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : nf.format(Math.round(x));
}

export function fmtPct(x) {
  return x === null || x === undefined ? '–' : `${x < 10 ? x.toFixed(1) : Math.round(x)}%`;
}

export function fmtBytes(b) {
  if (b === null || b === undefined) return '–';
  if (b < 1024) return `${b} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = b / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${u[i]}`;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Local wall-clock time with milliseconds, from unix ms. */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return '–';
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtDateTime(ms) {
  if (ms === null || ms === undefined) return '–';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(s) {
  if (s === null || s === undefined) return '–';
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** "2xx" … "5xx" class name for a status, for colouring. */
export function statusClass(status) {
  if (!status) return 'none';
  return `s${Math.floor(status / 100)}xx`;
}
