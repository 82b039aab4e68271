// What the console's browser tests stand on: the debug `rapport serve` with the demo
// organization on a free loopback port with a fresh data directory, Debian's Chromium driven by
// playwright-core (never a browser Playwright downloads), and a screenshot helper.
//
// Nothing here builds: `make test` runs `cargo test --workspace` first, which leaves the debug
// binary in target/debug and the example plugins in target/plugins (tests/artifacts/build.rs).

import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BINARY = process.env.RAPPORT_BIN ?? join(ROOT, 'target/debug/rapport');
export const WASM = process.env.RAPPORT_WASM_DIR ?? join(ROOT, 'target/plugins/wasm32-wasip2/release');
export const SCREENSHOTS = join(ROOT, 'target/screenshots');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/**
 * The plugins installed in the demo organization: `make test` passes the Makefile's DEMO_WASM
 * (what `make run` installs), so the tests see the demo a user sees.
 */
export const DEMO_WASM = (process.env.RAPPORT_DEMO_WASM ?? 'require_contact.wasm spend_rank.wasm customers_by_branch.wasm branch_standard.wasm')
  .split(/\s+/)
  .filter(Boolean);

/** Say what is missing and how to get it, instead of a stack trace from deep inside a step. */
export function checkPrerequisites() {
  const missing = [];
  if (!existsSync(BINARY)) missing.push(`${BINARY} (build it: cargo build -p rapport, or make test)`);
  for (const f of DEMO_WASM) {
    if (!existsSync(join(WASM, f))) missing.push(`${join(WASM, f)} (built by cargo test --workspace or make plugins)`);
  }
  if (!existsSync(CHROMIUM)) missing.push(`${CHROMIUM} (install Debian's chromium: make setup)`);
  if (missing.length) throw new Error(`the browser tests need:\n  ${missing.join('\n  ')}`);
}

/**
 * Start `rapport serve --demo` and wait until it prints its address and the demo owner key.
 * Resolves to { url, ownerKey, adminToken, dir, stop }.
 */
export async function startServer({ customers = 300 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'rapport-browser-'));
  const plugins = join(dir, 'demo-plugins');
  mkdirSync(plugins);
  for (const f of DEMO_WASM) copyFileSync(join(WASM, f), join(plugins, f));
  const adminToken = `ra_test_${randomBytes(16).toString('hex')}`;
  const child = spawn(
    BINARY,
    ['serve', '--data', join(dir, 'data'), '--listen', '127.0.0.1:0', '--demo', 'true',
      '--demo-plugins', plugins, '--demo-customers', String(customers)],
    {
      env: { ...process.env, RAPPORT_ADMIN_TOKEN: adminToken, RAPPORT_LOG: process.env.RAPPORT_LOG ?? 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const output = [];
  const stderr = createInterface({ input: child.stderr });
  stderr.on('line', (l) => {
    output.push(l);
    if (process.env.RAPPORT_BROWSER_VERBOSE) process.stderr.write(`[rapport] ${l}\n`);
  });
  const started = new Promise((resolveStart, rejectStart) => {
    let url = null;
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      output.push(line);
      const listening = line.match(/rapport listening on (http:\/\/\S+)/);
      if (listening) url = listening[1];
      const key = line.match(/owner key, shown once: (rk_[0-9a-f]+)/);
      if (key && url) resolveStart({ url, ownerKey: key[1] });
    });
    child.on('exit', (code) =>
      rejectStart(new Error(`rapport serve exited (${code}) before it was ready:\n${output.join('\n')}`)));
  });
  const timeout = new Promise((_, rejectTimeout) => {
    const t = setTimeout(
      () => rejectTimeout(new Error(`rapport serve was not ready after 5 minutes:\n${output.join('\n')}`)),
      300_000,
    );
    t.unref();
  });
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      // Shutdown waits for running jobs; a test that failed mid-import must not hang the run.
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const { url, ownerKey } = await Promise.race([started, timeout]);
    return { url, ownerKey, adminToken, dir, stop };
  } catch (e) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Headless Debian Chromium with a fresh profile; resolves to { context, dir, close }. */
export async function launchBrowser({ downloads } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'rapport-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    downloadsPath: downloads,
    viewport: { width: 1280, height: 800 },
    locale: 'en-US',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const close = async () => {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { context, dir, close };
}

let shot = 0;
/** A full-page screenshot, numbered in the order the scenario takes them (the first of a run
 * clears the previous run's). */
export async function screenshot(page, name) {
  if (shot === 0) rmSync(SCREENSHOTS, { recursive: true, force: true });
  mkdirSync(SCREENSHOTS, { recursive: true });
  shot += 1;
  const file = join(SCREENSHOTS, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** A call to the admin API (for setting up what the scenario needs beside the demo org). */
export async function api(server, method, path, token, body) {
  const res = await fetch(server.url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
