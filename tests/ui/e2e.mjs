// End-to-end tests of the dashboard in headless Chromium (playwright-core,
// the system's /usr/bin/chromium): every view, filters, a request's detail,
// XSS payloads rendered as text, a live row, the empty store, keyboard use.
// Screenshots go to tests/ui/artifacts/.
//
//   node --test tests/ui/e2e.mjs
//
// Needs: `npm ci --prefix web`, a built timeglass-ui (build/server/, or
// TIMEGLASS_UI_CMD), /usr/bin/chromium and /usr/bin/python3.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { ROOT, startUi, stopUi, launchChromium } from './harness.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ART = join(HERE, 'artifacts');
const PY = '/usr/bin/python3';

const tmp = mkdtempSync(join(tmpdir(), 'tg-e2e-'));
const store = join(tmp, 'fixture.db');
const demo = join(tmp, 'demo.db');
let ui;
let demoUi;
let scanUi; // the demo store, with a search budget of a few rows per call
let browser;
let page;
const problems = []; // dialogs, page errors, CSP violations

function watch(p) {
  p.on('dialog', (d) => {
    problems.push(`dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  p.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
}

/** Adds a request to the store db: args are fixture.insert_request()'s
 * keyword arguments, in Python (fixture's names in scope). */
function insertRequest(db, args) {
  execFileSync(PY, ['-c', `
import sqlite3, sys
sys.path.insert(0, ${JSON.stringify(HERE)})
import fixture
db = sqlite3.connect(${JSON.stringify(db)})
fixture.insert_request(db, ${args})
db.commit()
`]);
}

async function shot(name, p = page, fullPage = true) {
  await p.screenshot({ path: join(ART, `${name}.png`), fullPage });
}

async function go(hash, p = page, base = ui.url) {
  await p.goto(`${base}${hash}`);
}

before(async () => {
  mkdirSync(ART, { recursive: true });
  execFileSync(PY, [join(HERE, 'fixture.py'), store]);
  mkdirSync(join(tmp, 'bench'));
  copyFileSync(join(HERE, 'data', 'bench-run-1.json'), join(tmp, 'bench', 'run-1.json'));
  execFileSync(PY, [join(ROOT, 'bench', 'gen_store.py'), '--requests', '30000', '--db', demo], { stdio: 'ignore' });
  ui = await startUi(store);
  demoUi = await startUi(demo);
  scanUi = await startUi(demo, undefined, { TIMEGLASS_UI_SCAN_ROWS: '1500', TIMEGLASS_UI_LIST_MEMORY: '0' });
  browser = await launchChromium(join(tmp, 'profile'), { colorScheme: 'light' });
  page = browser.pages()[0] || await browser.newPage();
  watch(page);
});

after(async () => {
  if (browser) await browser.close();
  if (ui) await stopUi(ui);
  if (demoUi) await stopUi(demoUi);
  if (scanUi) await stopUi(scanUi);
  rmSync(tmp, { recursive: true, force: true });
});

test('overview shows the run scorecard and charts', async () => {
  await go('#/overview?run=1');
  await page.waitForSelector('.tiles');
  const tiles = await page.$$eval('.tile', (els) => Object.fromEntries(els.map((e) => [
    e.querySelector('.tile-label').textContent, e.querySelector('.tile-value').textContent])));
  assert.equal(tiles.Requests, '12');
  assert.equal(tiles['Latency avg'], '6.50 ms');
  assert.equal(tiles['Latency p90'], '11.0 ms');
  assert.equal(tiles['Latency p99'], '12.0 ms');
  assert.equal(tiles['5xx rate'], '17%');
  assert.equal(tiles.CPU, '50%');
  assert.equal(tiles['DB time'], '7.4%');
  // 7 records lost on a full ring; the sampler's lowered rate is shown apart, as information
  assert.equal(tiles['Data losses'], '7');
  const losses = await page.textContent('[aria-label="Data losses"]');
  assert.match(losses, /ring full/);
  assert.doesNotMatch(losses, /py_sample/);
  assert.match(await page.textContent('.notice-info'),
    /Sampling rate lowered under the CPU budget \(1000 sampler ticks not taken\)/);
  await page.waitForSelector('.chart canvas');
  assert.ok((await page.$$('.chart canvas')).length >= 4, 'throughput, latency, CPU and memory charts');
  assert.doesNotMatch(await page.textContent('main'), /not captured yet/);
  assert.match(await page.textContent('.run-line'), /Run #1/);
  await shot('overview-fixture');
});

test('realistic store: overview in light and dark, endpoints, requests', async () => {
  await go('#/overview', page, demoUi.url);
  await page.waitForSelector('.chart canvas');
  await page.waitForTimeout(300);
  // the realistic store has schema 1: no SQL or samples tables yet
  assert.match(await page.textContent('main'), /SQL queries: not captured yet/);
  await shot('overview-light');
  await page.keyboard.press('t');
  await page.waitForSelector('.chart canvas');
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await shot('overview-dark');
  await go('#/endpoints', page, demoUi.url);
  await page.waitForSelector('table.sortable tbody tr');
  await shot('endpoints-dark');
  await page.keyboard.press('t');
  await go('#/requests', page, demoUi.url);
  await page.waitForSelector('.requests-table tbody tr');
  await shot('requests-light', page, false);
  // mobile width
  const mobile = await browser.newPage();
  watch(mobile);
  await mobile.setViewportSize({ width: 390, height: 844 });
  await go('#/overview', mobile, demoUi.url);
  await mobile.waitForSelector('.chart canvas');
  await mobile.waitForTimeout(300);
  await shot('overview-mobile', mobile);
  await mobile.close();
});

test('endpoints: sort and open a route', async () => {
  await go('#/endpoints?run=1');
  await page.waitForSelector('table.sortable tbody tr');
  assert.equal((await page.$$('table.sortable tbody tr')).length, 5);
  await page.click('th button:has-text("p99")');
  await page.waitForFunction(() => location.hash.includes('sort=p99'));
  await page.waitForSelector('table.sortable th[aria-sort="descending"]');
  const first = await page.textContent('table.sortable tbody tr:first-child td:first-child');
  assert.match(first, /DELETE/);
  await shot('endpoints-fixture');
  await page.click('table.sortable tbody tr:has-text("/health")');
  await page.waitForFunction(() => location.hash.startsWith('#/requests') && location.hash.includes('route=%2Fhealth'));
  await page.waitForSelector('.requests-table tbody tr');
  assert.equal((await page.$$('.requests-table tbody tr')).length, 2);
});

test('requests: filters, sort and paging', async () => {
  await go('#/requests?run=1');
  // A hash change redraws the list in place: wait for this list, not the
  // previous test's rows.
  await page.waitForFunction(() => document.querySelectorAll('.requests-table tbody tr').length === 12);
  await page.selectOption('select[aria-label="Status"]', '5xx');
  await page.waitForFunction(() => location.hash.includes('status=5xx'));
  await page.waitForFunction(() => document.querySelectorAll('.requests-table tbody tr').length === 2);
  await page.fill('input[aria-label="Path contains"]', 'items/5');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('.requests-table tbody tr').length === 1);
  await shot('requests-filtered', page, false);
  await page.click('button:has-text("Clear all filters")');
  // The list is drawn anew: fill the new form, not the one going away.
  await page.waitForFunction(() => !/[?&](status|q)=/.test(location.hash)
    && document.querySelectorAll('.requests-table tbody tr').length === 12);
  await page.fill('input[aria-label="Minimum duration in milliseconds"]', '10');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('.requests-table tbody tr').length === 3);
  await page.click('th button:has-text("Duration")');
  await page.waitForFunction(() => location.hash.includes('sort=duration'));
  // Wait for the re-sorted list itself (the table is redrawn after the hash
  // changes), and read it in the same look: a redraw may follow.
  const durs = await (await page.waitForFunction(() => {
    const tds = [...document.querySelectorAll('.requests-table tbody td.dur')].map((t) => t.textContent);
    return tds.length === 3 && tds[0] === '12.0 ms' ? tds : null;
  })).jsonValue();
  assert.deepEqual(durs, ['12.0 ms', '11.0 ms', '10.0 ms']);
  // keyset paging on the realistic store: load more appends a page
  await go('#/requests', page, demoUi.url);
  await page.waitForFunction(() => document.querySelectorAll('.requests-table tbody tr').length === 100);
  await page.click('button.more');
  await page.waitForFunction(() => document.querySelectorAll('.requests-table tbody tr').length >= 200);
  const ids = await page.$$eval('.requests-table tbody tr', (trs) => trs.map((t) => t.dataset.id));
  assert.equal(new Set(ids).size, ids.length, 'no request listed twice');
});

/** What the store db holds: rows of a query, from Python's sqlite3. */
function sql(db, query) {
  return JSON.parse(execFileSync(PY, ['-c', `
import json, sqlite3, sys
print(json.dumps(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()))
`, db, query]));
}

test('requests: a path search that the server answers in parts', async () => {
  // Rare matches on 30,000 requests, read 1,500 per call: the list follows
  // the server's "next" by itself, saying how far back it searched, and
  // ends with every match, newest first.
  const [[needle]] = sql(demo, "SELECT substr(path, 1, length(path) - 1) FROM requests WHERE path GLOB '/items/[0-9]*'"
    + ' GROUP BY 1 HAVING count(*) BETWEEN 3 AND 30 ORDER BY count(*) DESC LIMIT 1');
  const want = sql(demo, `SELECT id FROM requests WHERE instr(path, '${needle}') > 0 ORDER BY start_unix_ns DESC, id DESC`)
    .map(([id]) => String(id));
  const notes = [];
  await page.exposeFunction('tgNote', (t) => notes.push(t)).catch(() => {});
  await go(`#/requests?run=1&q=${encodeURIComponent(needle)}`, page, scanUi.url);
  await page.evaluate(() => {
    new MutationObserver(() => {
      const n = document.querySelector('.search-note');
      if (n && n.isConnected && n.textContent) window.tgNote(n.textContent);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  await page.waitForFunction(() => /all loaded/.test(document.querySelector('.page-head').textContent), null, { timeout: 60000 });
  const ids = await page.$$eval('.requests-table tbody tr', (trs) => trs.map((t) => t.dataset.id));
  assert.deepEqual(ids, want);
  assert.ok(notes.some((t) => /^Searching back to \d/.test(t)), `no "searching back to" note: ${notes.slice(0, 3)}`);
  await shot('requests-search-parts', page, false);
  // Nothing matches: the list searches to the end and says so.
  await go('#/requests?run=1&method=POST&q=no-such-path', page, scanUi.url);
  await page.waitForSelector('text=No requests match these filters', { timeout: 60000 });
});

test('request detail: waterfall, context, exception, curl, panels', async () => {
  await go('#/requests/5?run=1');
  await page.waitForSelector('.waterfall');
  assert.equal((await page.$$('.wf-row')).length, 5, 'in, app, one query, out, total');
  const text = await page.textContent('main');
  assert.match(text, /ValueError: <b>boom<\/b>/);
  assert.match(await page.textContent('.q-err'), /duplicate key value/);
  assert.match(text, /Flame graph: no samples during this request/);
  assert.match(text, /\[redacted\]/);
  assert.equal(await page.$$eval('main b', (b) => b.length), 0, 'exception markup stays text');
  await page.click('button:has-text("Copy as curl")');
  const curl = await page.textContent('pre.curl');
  assert.equal(curl, "curl -X 'POST' 'http://127.0.0.1:8000/items' -H 'user-agent: curl/7.88.1' -H 'authorization: [redacted]'");
  await shot('detail');
});

test('request detail: queries, waterfall and an interactive flame graph', async () => {
  await go('#/requests/9?run=1');
  await page.waitForSelector('.queries-table tbody tr');
  assert.equal((await page.$$('.queries-table tbody tr')).length, 5);
  assert.equal(await page.$$eval('.queries-table .tag-bad', (t) => t.length), 3, 'three N+1 queries');
  assert.equal(await page.$$eval('.queries-table .tag-warn', (t) => t.length), 1, 'one duplicate');
  assert.match(await page.textContent('.npo-list'), /SELECT \* FROM tags WHERE item_id = \?/);
  assert.equal(await page.textContent('.queries-table tbody tr:first-child .sql-kw'), 'SELECT');
  // waterfall: in, app, 5 queries, 1 outbound call, out, total
  assert.equal((await page.$$('.wf-row')).length, 10);
  assert.equal((await page.$$('.wf-row[data-query]')).length, 5);
  assert.match(await page.textContent('.spans-table'), /prices\.example\.com\/v1\/prices\/4/);
  await page.waitForSelector('.flame .flame-frame');
  const frames = await page.$$eval('.flame .flame-frame', (fs) => fs.map((f) => f.textContent));
  assert.deepEqual(frames.slice(0, 3), ['all (14 samples)', 'run', 'get_item']);
  assert.ok(frames.includes('(waiting)') && frames.includes('dumps'));
  await page.locator('#flame').scrollIntoViewIfNeeded();
  await page.hover('.flame-frame:has-text("load_item")');
  await page.waitForSelector('.flame-tip:not([hidden])');
  const tip = await page.textContent('.flame-tip');
  assert.match(tip, /load_item/);
  assert.match(tip, /app\/db\.py:10/);
  assert.match(tip, /8 samples · 57% of all/);
  await shot('detail-flame');
  // click to zoom: load_item fills the width, render is gone
  await page.click('.flame-frame:has-text("load_item")');
  await page.waitForSelector('.flame-crumbs button');
  const w = await page.$eval('.flame-frame[aria-level="4"]', (f) => f.style.width);
  assert.equal(w, '100%');
  assert.equal(await page.$$eval('.flame-frame', (fs) => fs.filter((f) => f.textContent === 'dumps').length), 0);
  await page.click('button:has-text("Reset zoom")');
  await page.waitForFunction(() => [...document.querySelectorAll('.flame-frame')].some((f) => f.textContent === 'dumps'));
  // search highlights matches
  await page.fill('.flame-search', 'dumps');
  await page.waitForSelector('.flame-frame.f-match');
  assert.deepEqual(await page.$$eval('.flame-frame.f-match', (fs) => fs.map((f) => f.textContent)), ['dumps']);
  assert.match(await page.textContent('.flame-match'), /29% of samples/);
  // keyboard: focus the graph, move down, zoom with Enter, back out with Escape
  await page.fill('.flame-search', '');
  await page.focus('.flame');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.flame-crumbs button');
  assert.match(await page.textContent('.flame-crumbs'), /get_item/);
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.querySelector('.flame-crumbs button') || document.querySelector('.flame-crumbs').textContent.indexOf('get_item') < 0);
  assert.match(await page.evaluate(() => location.hash), /^#\/requests\/9/, 'Escape in the graph zooms out, not back');
  await shot('detail-queries');
  await page.keyboard.press('t');
  await page.waitForSelector('.flame .flame-frame');
  await page.locator('#sql').scrollIntoViewIfNeeded();
  await shot('detail-queries-dark', page, false);
  await page.keyboard.press('t');
});

test('request detail: housekeeping dimmed and labelled, a batch as one row', async () => {
  await go('#/requests/102?run=2');
  await page.waitForSelector('.queries-table tbody tr');
  const rows = await page.$$eval('.queries-table tbody tr', (trs) => trs.map((tr) => ({
    kind: tr.dataset.kind, dimmed: tr.classList.contains('q-house'),
    opacity: getComputedStyle(tr.querySelector('td')).opacity,
    tags: [...tr.querySelectorAll('.tag')].map((t) => t.textContent) })));
  assert.deepEqual(rows.map((r) => [r.kind, r.dimmed, r.tags]), [
    ['housekeeping', true, ['housekeeping']],
    ['app', false, ['× 500']],
    ['housekeeping', true, ['housekeeping']]]);
  assert.ok(Number(rows[0].opacity) < 1 && Number(rows[1].opacity) === 1, 'housekeeping rows are dimmed');
  assert.match(await page.textContent('.q-summary'), /2 housekeeping/);
  assert.match(await page.textContent('.queries-table .q-hint'), /execute_values/);
  assert.equal(await page.$$eval('.queries-table .tag-bad, .queries-table .tag-warn', (t) => t.length), 0);
  assert.equal(await page.$$eval('.wf-row.wf-house', (r) => r.length), 2);
  await shot('detail-housekeeping');
});

test('endpoints: SQL figures and a route flame graph', async () => {
  await go('#/endpoints?run=1');
  await page.waitForSelector('table.sortable tbody tr');
  const row = page.locator('table.sortable tbody tr', { hasText: 'GET/items/{item_id}flame' });
  const cells = await row.locator('td').allTextContents();
  assert.deepEqual(cells.slice(10, 13), ['1.0', '13%', 'N+1 × 1']);
  assert.match(cells[0], /flame/);
  await shot('endpoints-sql');
  // The SQL columns sort too: by share of time in SQL, items first.
  await page.click('th button.sort:has-text("DB time")');
  await page.waitForFunction(() => location.hash.includes('sort=db'));
  await page.waitForSelector('th[aria-sort="descending"] button:has-text("DB time")');
  const first = await page.locator('table.sortable tbody tr').first().locator('td').first().textContent();
  assert.match(first, /^GET\/items\/\{item_id\}/);
  await row.locator('a.flame-link').click();
  await page.waitForFunction(() => location.hash.startsWith('#/flame'));
  await page.waitForSelector('.flame .flame-frame');
  assert.match(await page.textContent('.flame-legend'), /^20 samples/);
  await page.selectOption('select[aria-label="Samples"]', 'running');
  await page.waitForFunction(() => document.querySelector('.flame-legend') && document.querySelector('.flame-legend').textContent.startsWith('17 samples'));
  await shot('route-flame');
  // Top functions below it: own samples add up to at most the samples shown,
  // and a row searches the graph for that function.
  const topRows = page.locator('.flame-top-table tbody tr');
  assert.ok(await topRows.count() >= 2);
  const selfs = (await page.locator('.flame-top-table tbody tr td:nth-child(2)').allTextContents()).map(Number);
  assert.ok(selfs.reduce((a, b) => a + b, 0) <= 17 && selfs[0] >= selfs[selfs.length - 1], String(selfs));
  const firstName = await topRows.first().locator('td .mono').textContent();
  await topRows.first().click();
  assert.equal(await page.inputValue('.flame-search'), firstName);
  await page.waitForSelector('.flame .flame-frame.f-match');
});

test('compare: a differential flame graph of two routes', async () => {
  await page.emulateMedia({ colorScheme: 'light' });
  await go(`#/compare?a_run=1&a_route=${encodeURIComponent('GET /items/{item_id}')}&b_run=1&b_route=${encodeURIComponent('POST /items')}`);
  await page.evaluate(() => localStorage.setItem('timeglass-theme', 'light'));
  await page.reload();
  await page.waitForSelector('.flame .flame-frame.f-diff');
  assert.equal(await page.getAttribute('.tabs a[data-view="compare"]', 'aria-current'), 'page');
  const legend = await page.textContent('.diff-legend');
  assert.match(legend, /A: GET \/items\/\{item_id\} · run #1 · 20 samples/);
  assert.match(legend, /B: POST \/items · run #1 · 7 samples/);
  assert.match(legend, /shrank in B.*grew in B/);
  const cls = (name) => page.$eval(`.flame-frame[aria-label^="${name},"]`, (f) => f.className);
  assert.match(await cls('load_item'), /f-shrank/);
  assert.match(await cls('render'), /f-grew/);
  assert.equal(await page.textContent('.flame-frame.f-root'), 'all (A 20 · B 7 samples)');
  // the pickers: both runs, and the routes of run 1
  await page.waitForFunction(() => document.querySelectorAll('select[data-side="b"][data-pick="route"] option').length > 3);
  assert.equal(await page.inputValue('select[data-side="a"][data-pick="route"]'), 'GET /items/{item_id}');
  await page.hover('.flame-frame:has-text("render")');
  await page.waitForSelector('.flame-tip:not([hidden])');
  const tip = await page.textContent('.flame-tip');
  assert.match(tip, /A: 4 samples · 20% of A/);
  assert.match(tip, /B: 5 samples · 71% of B/);
  assert.match(tip, /Change: \+51 pts/);
  await shot('compare-tip');
  await page.mouse.move(5, 600);
  await page.waitForSelector('.flame-tip[hidden]', { state: 'attached' });
  await shot('compare');
  // click to zoom, keyboard as in the flame graph
  await page.click('.flame-frame:has-text("load_item")');
  await page.waitForSelector('.flame-crumbs button');
  assert.equal(await page.$$eval('.flame-frame', (fs) => fs.filter((f) => f.textContent === 'dumps').length), 0);
  await page.focus('.flame');
  await page.keyboard.press('Escape'); // out to get_item, run, all
  await page.waitForFunction(() => !document.querySelector('.flame-crumbs').textContent.includes('load_item'));
  await page.keyboard.press('Escape');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.querySelector('.flame-crumbs button'));
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.flame-crumbs button');
  assert.match(await page.textContent('.flame-crumbs'), /get_item/);
  // a side becomes the whole run
  await page.selectOption('select[data-side="a"][data-pick="route"]', '');
  await page.waitForFunction(() => location.hash.includes('a_run=1') && !location.hash.includes('a_route'));
  await page.waitForFunction(() => /A: whole run #1 · 28 samples/.test(document.querySelector('.diff-legend')?.textContent || ''));
});

test('older store: detail panels say not captured yet', async () => {
  await go('#/requests/1', page, demoUi.url);
  await page.waitForSelector('.waterfall');
  const text = await page.textContent('main');
  assert.match(text, /SQL queries: not captured yet/);
  assert.match(text, /Flame graph: not captured yet/);
});

test('XSS payloads render as text', async () => {
  await go('#/requests?run=2');
  await page.waitForFunction(() => [...document.querySelectorAll('.requests-table a.path')].some((a) => a.textContent.includes('<script>')));
  const paths = await page.$$eval('.requests-table a.path', (as) => as.map((a) => a.textContent));
  assert.ok(paths.includes('/<script>alert(1)</script>?a=<img src=x onerror=alert(2)>'), paths.join(' | '));
  await go('#/requests/101?run=2');
  await page.waitForSelector('.headers');
  const headers = await page.textContent('.headers');
  assert.ok(headers.includes('</script><img src=x onerror=alert(1)>'));
  await page.waitForSelector('.queries-table code.sql');
  assert.equal(await page.textContent('.queries-table code.sql'),
    "SELECT '</script><img src=x onerror=alert(1)>' AS x FROM orders WHERE note = '<b>hi</b>'");
  assert.equal(await page.$$eval('.queries-table b', (b) => b.length), 0);
  assert.equal(await page.evaluate(() => document.querySelectorAll('img[src="x"], main script, main img').length), 0);
  assert.equal(await page.evaluate(() => document.scripts.length), 1, 'only the bundle');
  await page.waitForTimeout(300);
  assert.deepEqual(problems.filter((p) => p.startsWith('dialog')), []);
  await shot('xss-detail');
});

test('a request recorded during the test appears live', async () => {
  await go('#/requests');
  await page.waitForSelector('.requests-table tbody tr');
  await page.waitForTimeout(800); // the event stream is connected
  insertRequest(store, `id=500, run_id=2, start_unix_ns=fixture.T0 + 30_000 * fixture.MS, duration_ns=4 * fixture.MS,
                 method='PATCH', path='/live/arrival', route='/live/{what}', status=202`);
  await page.waitForSelector('.requests-table tbody tr[data-id="500"]', { timeout: 5000 });
  const first = await page.getAttribute('.requests-table tbody tr:first-child', 'data-id');
  assert.equal(first, '500');
  assert.ok(await page.isVisible('#live-badge'));
  await shot('live');
});

test('live streams all taken: the page says so, then goes live again', async () => {
  const db = join(tmp, 'busy.db');
  execFileSync(PY, [join(HERE, 'fixture.py'), db]);
  const busy = await startUi(db);
  const MAX_STREAMS = 32; // server/API.md
  const held = [];
  const p = await browser.newPage(); // not watched: the refused stream logs an error on purpose
  try {
    for (let i = 0; i < MAX_STREAMS; i++) {
      const sock = net.connect(busy.port, '127.0.0.1');
      await new Promise((resolve) => {
        sock.once('data', resolve);
        sock.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${busy.port}\r\n\r\n`);
      });
      held.push(sock);
    }
    await p.goto(`${busy.url}#/requests`);
    await p.waitForSelector('.requests-table tbody tr');
    await p.waitForFunction(() => /Live updates paused/.test(document.getElementById('banner').textContent),
      null, { timeout: 5000 });
    await shot('streams-taken', p, false);
    for (const sock of held) sock.destroy();
    held.length = 0;
    insertRequest(db, `id=600, run_id=2, start_unix_ns=fixture.T0 + 40_000 * fixture.MS, duration_ns=3 * fixture.MS,
                   method='GET', path='/live/again', route='/live/{what}', status=200`);
    // the page retries after 10 s (the server's Retry-After)
    await p.waitForSelector('.requests-table tbody tr[data-id="600"]', { timeout: 20000 });
    assert.doesNotMatch(await p.textContent('#banner'), /Live updates paused/);
  } finally {
    for (const sock of held) sock.destroy();
    await p.close();
    await stopUi(busy);
  }
});

test('keyboard: views, rows, detail and back', async () => {
  await go('#/overview?run=1');
  await page.waitForSelector('.tiles');
  await page.keyboard.press('3');
  await page.waitForSelector('.requests-table tbody tr');
  await page.keyboard.press('j');
  await page.keyboard.press('j');
  const focused = await page.evaluate(() => document.activeElement.dataset.id);
  assert.equal(focused, '11');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.waterfall');
  assert.match(await page.evaluate(() => location.hash), /^#\/requests\/11/);
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => location.hash.startsWith('#/requests?'));
  await page.keyboard.press('?');
  assert.ok(await page.isVisible('#help'));
  await shot('help');
  await page.keyboard.press('Escape');
  await page.keyboard.press('2');
  await page.waitForSelector('table.sortable');
});

test('no store yet: a clear message, then it lights up', async () => {
  const db = join(tmp, 'later', 'timeglass.db');
  const empty = await startUi(db);
  try {
    await page.goto(empty.url);
    await page.waitForSelector('.notice');
    assert.match(await page.textContent('.notice'), /No recordings yet/);
    assert.match(await page.textContent('.notice'), /timeglass run -- uvicorn main:app/);
    await shot('no-store');
    mkdirSync(dirname(db), { recursive: true });
    execFileSync(PY, [join(HERE, 'fixture.py'), db]);
    await page.waitForSelector('.tiles', { timeout: 8000 });
  } finally {
    await stopUi(empty);
  }
});

test('bench: scorecard, latency histograms, findings linked to their requests', async () => {
  await go('#/bench?run=1');
  await page.waitForSelector('.bench-findings');
  const score = await page.textContent('.bench-score');
  assert.match(score, /Bad input handling \(4xx\)\s*C\s*95\.0 %/);
  const ops = await page.textContent('.bench-ops');
  assert.match(ops, /\/items\/\{item_id\}/);
  assert.match(ops, /not loaded: POST is not safe/);
  assert.equal((await page.$$('.bench-hist .bench-bar')).length, 6);
  const link = await page.getAttribute('.bench-findings a.bench-req', 'href');
  assert.equal(link, '#/requests/3?run=1');
  // the curl line is text, never markup
  assert.match(await page.textContent('.bench-findings'), /<script>alert\(1\)<\/script>/);
  await page.click('.bench-findings a.bench-req');
  await page.waitForFunction(() => location.hash.startsWith('#/requests/3'));
  await shot('bench');
});

test('no CSP violations, page errors or dialogs', () => {
  assert.deepEqual(problems.filter((p) => !p.includes('Failed to load resource')), []);
});
