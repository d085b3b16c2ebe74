// Paint time of the dashboard's requests list on a large store: the time
// from navigation start until the first page of rows is in the table, on a
// fresh page each time (after the server's warm-up), in headless Chromium.
//
//   node bench/ui_paint.mjs [--db FILE] [--requests N] [--rounds N] [--ui CMD]
//
// Generates the store with bench/gen_store.py when it does not exist
// (1,000,000 requests, about 11 s), starts build/server/timeglass-ui (or
// TIMEGLASS_UI_CMD / --ui) on it and prints each round and the median.
// Needs `npm ci --prefix web` (playwright-core), /usr/bin/chromium and
// /usr/bin/python3.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT, startUi, stopUi, launchChromium } from '../tests/ui/harness.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));

const ROW = '.requests-table tbody tr[data-row]';

function options() {
  const o = {
    db: join(ROOT, 'bench', 'results', 'ui-store.db'),
    requests: 1_000_000,
    rounds: 5,
    ui: process.env.TIMEGLASS_UI_CMD || join(ROOT, 'build', 'server', 'timeglass-ui'),
  };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o) || argv[i + 1] === undefined) {
      console.error('usage: node bench/ui_paint.mjs [--db FILE] [--requests N] [--rounds N] [--ui CMD]');
      process.exit(2);
    }
    o[k] = typeof o[k] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  return o;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main() {
  const o = options();
  if (!existsSync(o.db)) {
    mkdirSync(dirname(o.db), { recursive: true });
    console.log(`generating ${o.requests} requests into ${o.db}…`);
    execFileSync('/usr/bin/python3', [join(HERE, 'gen_store.py'), '--requests', String(o.requests), '--db', o.db], { stdio: 'inherit' });
  }
  const ui = await startUi(o.db, o.ui.split(/\s+/));
  const base = ui.url;
  const profile = mkdtempSync(join(tmpdir(), 'tg-paint-'));
  let browser = null;
  try {
    // Warm-up: the newest run's aggregates load in the background at start;
    // the overview answers once they are in memory.
    const t0 = performance.now();
    const res = await fetch(`${base}api/overview`);
    if (!res.ok) throw new Error(`GET /api/overview: HTTP ${res.status}`);
    const count = (await res.json()).summary.count;
    console.log(`store: ${o.db}, ${count} requests in the newest run; warm-up ${(performance.now() - t0).toFixed(0)} ms`);

    browser = await launchChromium(profile);
    // Records when the first row enters the table, on the page's clock
    // (milliseconds since navigation start).
    await browser.addInitScript((sel) => {
      const seen = () => {
        if (window.__rowsAt === undefined && document.querySelector(sel)) window.__rowsAt = performance.now();
      };
      new MutationObserver(seen).observe(document, { childList: true, subtree: true });
    }, ROW);
    for (const p of browser.pages()) await p.close();
    const times = [];
    for (let i = 0; i < o.rounds; i++) {
      const page = await browser.newPage();
      await page.goto(`${base}#/requests`);
      await page.waitForSelector(ROW, { timeout: 60000 });
      const ms = await page.evaluate(() => window.__rowsAt);
      const rows = await page.$$eval(ROW, (r) => r.length);
      times.push(ms);
      console.log(`round ${i + 1}: ${ms.toFixed(0)} ms (${rows} rows)`);
      await page.close();
    }
    const med = median(times);
    console.log(`median: ${med.toFixed(0)} ms over ${times.length} rounds (bar: < 1000 ms) ${med < 1000 ? 'ok' : 'OVER'}`);
    if (med >= 1000) process.exitCode = 1;
  } finally {
    if (browser) await browser.close();
    await stopUi(ui);
    rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
