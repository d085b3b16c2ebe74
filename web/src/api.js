// The dashboard's JSON API client (server/API.md).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET /api/<path>?params; resolves to the JSON body, rejects with ApiError. */
export async function api(path, params = {}, { signal } = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') qs.set(k, String(v));
  }
  const url = `/api/${path}${qs.toString() ? `?${qs}` : ''}`;
  let res;
  try {
    res = await fetch(url, { signal, headers: { Accept: 'application/json' } });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'offline', 'The dashboard server does not answer: is `timeglass ui` still running?');
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(res.status, 'bad_response', `Unexpected answer from the server (HTTP ${res.status})`);
  }
  if (!res.ok) {
    const err = body && body.error ? body.error : {};
    throw new ApiError(res.status, err.code || 'error', err.message || `HTTP ${res.status}`);
  }
  return body;
}

/** True for errors that mean "the store has nothing to show yet". */
export function isNoData(err) {
  return err instanceof ApiError && ['store_missing', 'store_empty', 'no_runs'].includes(err.code);
}
