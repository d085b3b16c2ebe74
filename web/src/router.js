// Hash routing: #/overview, #/endpoints, #/requests, #/requests/ID,
// #/flame (a route's flame graph), #/compare (two routes or runs), #/bench
// (the report of timeglass bench), each
// with query parameters (run, filters, sort).

export function parseRoute(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, '');
  const [pathPart, query = ''] = raw.split('?');
  const parts = pathPart.split('/').filter(Boolean);
  const params = new URLSearchParams(query);
  let view = parts[0] || 'overview';
  let id = null;
  if (view === 'requests' && parts[1]) {
    view = 'detail';
    id = parts[1];
  }
  if (!['overview', 'endpoints', 'requests', 'detail', 'flame', 'compare', 'bench'].includes(view)) view = 'overview';
  return { view, id, params };
}

/** The hash for a view with params (empty values dropped). */
export function href(path, params = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') qs.set(k, String(v));
  }
  const s = qs.toString();
  return `#/${path}${s ? `?${s}` : ''}`;
}

export function navigate(path, params = {}, { replace = false } = {}) {
  const target = href(path, params);
  if (replace) history.replaceState(null, '', target);
  else location.hash = target;
  if (replace) window.dispatchEvent(new HashChangeEvent('hashchange'));
}
