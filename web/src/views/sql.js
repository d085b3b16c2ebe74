// SQL for display: keyword highlighting built from text nodes and spans
// (SQL is attacker-controlled: it never goes through markup), and the
// queries table of a request. Housekeeping (what drivers and pools run by
// themselves: BEGIN/COMMIT, SET, pool resets, probes) is shown dimmed and
// labelled, never flagged; a batch (executemany) is one row with its count
// of executions.

import { h } from '../dom.js';
import { fmtMs, fmtCount } from '../format.js';

const KEYWORDS = new Set(`select from where and or not in is null like ilike between join left right inner outer
full cross on using group by order having limit offset insert into values update set delete returning
create table index drop alter add primary key foreign references distinct as case when then else end
union all exists with asc desc count sum avg min max begin commit rollback savepoint release pragma
conflict do nothing upsert lateral fetch first rows only for share nowait skip locked`.split(/\s+/));

// One token per match: strings, quoted identifiers, comments, numbers,
// placeholders, words, whitespace, anything else.
const TOKEN = /('(?:[^']|'')*'?|"(?:[^"]|"")*"?|--[^\n]*|\/\*[\s\S]*?(?:\*\/|$)|\$\d+|:\w+|\?|\b\d+(?:\.\d+)?\b|[A-Za-z_][A-Za-z0-9_$]*|\s+|[\s\S])/g;

/** A <code> element showing sql with keywords, strings, numbers and
 * placeholders in spans; text only. */
export function sqlCode(sql, { className = 'sql' } = {}) {
  const el = h('code', { class: className });
  const s = String(sql ?? '');
  for (const m of s.matchAll(TOKEN)) {
    const t = m[0];
    let cls = null;
    if (t[0] === "'") cls = 'sql-str';
    else if (t.startsWith('--') || t.startsWith('/*')) cls = 'sql-comment';
    else if (t[0] === '$' || t[0] === '?' || (t[0] === ':' && t.length > 1)) cls = 'sql-param';
    else if (/^\d/.test(t)) cls = 'sql-num';
    else if (/^[A-Za-z_]/.test(t) && KEYWORDS.has(t.toLowerCase())) cls = 'sql-kw';
    if (cls) {
      const span = document.createElement('span');
      span.className = cls;
      span.textContent = t;
      el.appendChild(span);
    } else {
      el.appendChild(document.createTextNode(t));
    }
  }
  return el;
}

const HOUSE_TITLE = 'Housekeeping: run by the driver, pool or library itself (transaction control, session settings, pool resets, probes, type introspection). Never counted as N+1 or duplicate.';

/** 1 if q is housekeeping rather than the app's own statement. */
export function isHousekeeping(q) {
  return q.kind === 'housekeeping';
}

/** The tag of a batch query (executemany), or null. */
function batchTag(q) {
  if (!(q.executions > 1)) return null;
  return h('span', { class: 'tag', title: `One call that ran the statement ${fmtCount(q.executions)} times (executemany); rows and duration cover them all` },
    `× ${fmtCount(q.executions)}`);
}

/** A hint for a batch that made one round trip per execution, or null. */
function batchHint(q) {
  if (!(q.executions > 1) || q.tap !== 'libpq') return null;
  return h('div', { class: 'q-hint' },
    `psycopg2 sends executemany() as ${fmtCount(q.executions)} round trips; psycopg2.extras.execute_values() sends the rows in a few statements.`);
}

/** The queries table of a request (GET /api/requests/ID/queries). */
export function queriesTable(data, { onHover } = {}) {
  const sum = data.summary;
  const maxMs = Math.max(0.001, ...data.rows.map((q) => q.duration_ms));
  const head = h('div', { class: 'q-summary' },
    h('span', null, h('strong', null, fmtCount(sum.count)), ` quer${sum.count === 1 ? 'y' : 'ies'}`),
    h('span', null, h('strong', null, fmtMs(sum.total_ms)), ' in the database'),
    sum.n_plus_one.length ? h('span', { class: 'tag tag-bad' }, `N+1 × ${sum.n_plus_one.length}`) : null,
    sum.duplicates ? h('span', { class: 'tag tag-warn' }, `${fmtCount(sum.duplicates)} duplicate${sum.duplicates === 1 ? '' : 's'}`) : null,
    sum.housekeeping ? h('span', { class: 'muted small', title: HOUSE_TITLE }, `${fmtCount(sum.housekeeping)} housekeeping (dimmed)`) : null);
  const npo = sum.n_plus_one.length
    ? h('ul', { class: 'npo-list' }, sum.n_plus_one.map((f) => h('li', null,
      h('span', { class: 'tag tag-bad' }, 'N+1'), ` ${fmtCount(f.count)} × `, sqlCode(f.fingerprint, { className: 'sql small' }),
      h('span', { class: 'muted' }, ` — ${fmtMs(f.total_ms)}`))))
    : null;
  const rows = data.rows.map((q, i) => {
    const bar = h('span', { class: 'bar q-bar' });
    bar.style.width = `${Math.max(2, (q.duration_ms / maxMs) * 100)}%`;
    const house = isHousekeeping(q);
    const tr = h('tr', { 'data-query': String(q.id), 'data-kind': q.kind || 'app', class: [q.error ? 'q-error' : null, house ? 'q-house' : null].filter(Boolean).join(' ') || null },
      h('td', { class: 'num muted' }, String(i + 1)),
      h('td', { class: 'num' }, `+${fmtMs(q.start_offset_ms)}`),
      h('td', { class: 'sql-cell' },
        sqlCode(q.sql),
        q.sql_truncated ? h('span', { class: 'tag' }, 'truncated') : null,
        house ? h('span', { class: 'tag tag-house', title: HOUSE_TITLE }, 'housekeeping') : null,
        batchTag(q),
        q.n_plus_one ? h('span', { class: 'tag tag-bad', title: 'The same query shape ran once per row of an earlier result (N+1)' }, 'N+1') : null,
        q.duplicate ? h('span', { class: 'tag tag-warn', title: 'The exact same query ran before in this request' }, 'duplicate') : null,
        q.error ? h('div', { class: 'q-err' }, q.error) : null,
        batchHint(q)),
      h('td', { class: 'num dur-cell' }, h('span', null, fmtMs(q.duration_ms)), bar),
      h('td', { class: 'num' }, q.rows === null || q.rows === undefined ? '–' : fmtCount(q.rows)),
      h('td', { class: 'mono small call-site' }, q.call_site || h('span', { class: 'muted' }, '–')),
      h('td', { class: 'muted small' }, [q.db_system, q.database].filter(Boolean).join(' · ')));
    if (onHover) {
      tr.addEventListener('mouseenter', () => onHover(q.id));
      tr.addEventListener('mouseleave', () => onHover(null));
    }
    return tr;
  });
  return h('div', { class: 'queries' }, head, npo,
    h('div', { class: 'q-scroll' }, h('table', { class: 'grid compact queries-table' },
      h('thead', null, h('tr', null, h('th', { class: 'num' }, '#'), h('th', { class: 'num' }, 'At'), h('th', null, 'SQL'),
        h('th', { class: 'num' }, 'Duration'), h('th', { class: 'num' }, 'Rows'), h('th', null, 'Call site'), h('th', null, 'DB'))),
      h('tbody', null, rows))));
}
