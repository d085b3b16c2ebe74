// What the dashboard's browser tests (e2e.mjs) and benchmarks
// (bench/ui_paint.mjs) share: a timeglass-ui process on a store, and
// headless Chromium (playwright-core from web/node_modules, the system's
// /usr/bin/chromium).

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(ROOT, 'web', 'package.json'));
const { chromium } = require('playwright-core');

/** The dashboard's command: TIMEGLASS_UI_CMD, else build/server/timeglass-ui (or build-ui/). */
export function uiCommand() {
  if (process.env.TIMEGLASS_UI_CMD) return process.env.TIMEGLASS_UI_CMD.split(/\s+/);
  for (const b of ['build', 'build-ui']) {
    const exe = join(ROOT, b, 'server', 'timeglass-ui');
    if (existsSync(exe)) return [exe];
  }
  throw new Error('no timeglass-ui: build it or set TIMEGLASS_UI_CMD');
}

/**
 * Starts the dashboard (command: argv, default uiCommand()) on the store db,
 * on a port it picks; resolves to { port, proc, url } once it listens
 * (its banner names the address).
 */
export async function startUi(db, command = uiCommand(), env = {}) {
  const [cmd, ...args] = command;
  const proc = spawn(cmd, [...args, '--db', db, '--port', '0', '--no-open'],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const banner = await new Promise((resolve, reject) => {
    proc.stdout.once('data', resolve);
    proc.once('exit', (code) => reject(new Error(`timeglass-ui exited with ${code}`)));
  });
  proc.stdout.resume();
  const m = /dashboard at (http:\/\/\S+:(\d+)\/)/.exec(String(banner));
  if (!m) {
    proc.kill('SIGTERM');
    throw new Error(`timeglass-ui: no address in its banner: ${banner}`);
  }
  return { port: Number(m[2]), proc, url: m[1] };
}

/** Stops a dashboard started by startUi(); resolves once it exited. */
export function stopUi(ui) {
  return new Promise((resolve) => {
    if (ui.proc.exitCode !== null) return resolve();
    ui.proc.once('exit', resolve);
    ui.proc.kill('SIGTERM');
  });
}

/** Headless Chromium with its profile in the folder profile, at 1360x900;
 * options are added to playwright's launchPersistentContext(). */
export function launchChromium(profile, options = {}) {
  return chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1360, height: 900 },
    ...options,
  });
}
