// Shared pieces of the browser tests: the real server binary, a stand-in copilot, Chromium.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');
export const artifacts = path.join(repoRoot, 'artifacts');

/** How long any one expected event may take (a bound, not a sleep). */
export const PATIENCE_MS = 20_000;

/** The server binary: $JIVA_SERVER_BIN (set by scripts/test-browser.sh) or the debug build. */
export function serverBin() {
  return process.env.JIVA_SERVER_BIN || path.join(repoRoot, 'target', 'debug', 'jivachat-server');
}

export function tempDir(prefix) {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/**
 * Starts the real server on 127.0.0.1:`port` (0: any free port) with its store in `dataDir`.
 * Resolves once it logs that it listens, with its address. Its working directory is `dataDir`,
 * so no `.env` of the developer's is read; COPILOT_ENDPOINT and GRAPHQL_* come only from `env`.
 */
export async function startServer({ dataDir, port = 0, env = {} }) {
  const childEnv = { ...process.env };
  for (const name of Object.keys(childEnv)) {
    if (name.startsWith('JIVA_') || name.startsWith('GRAPHQL_') || name === 'COPILOT_ENDPOINT') {
      delete childEnv[name];
    }
  }
  Object.assign(childEnv, env, { JIVA_LOG: 'info,jiva_ws=debug' });
  const args = ['--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--log-format', 'json'];
  const child = spawn(serverBin(), args, { cwd: dataDir, env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  const log = [];
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log.join('\n')}`)), PATIENCE_MS);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code ?? signal}) before listening:\n${log.join('\n')}`));
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      log.push(line);
      if (log.length > 500) log.shift();
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry?.fields?.message === 'JivaChat listening') {
        clearTimeout(timer);
        resolve(entry.fields.addr);
      }
    });
  });
  return {
    addr,
    port: Number(addr.split(':').pop()),
    url: `http://${addr}/`,
    log,
    /** SIGTERM, then waits for the process to end. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      let timer;
      const result = await Promise.race([
        exited,
        new Promise((resolve) => {
          timer = setTimeout(() => resolve(null), PATIENCE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (result === null) {
        child.kill('SIGKILL');
        throw new Error('server did not stop on SIGTERM');
      }
      return result;
    },
  };
}

/** A server with a fresh temporary data directory, removed again by `stop()`. */
export async function startFreshServer(options = {}) {
  const dataDir = tempDir('jiva-browser-');
  const server = await startServer({ ...options, dataDir });
  const stop = server.stop;
  server.dataDir = dataDir;
  server.stop = async () => {
    try {
      return await stop();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  };
  return server;
}

/**
 * A stand-in for the copilot service: answers each POST with `answer` streamed as JSON objects
 * written back to back (no delimiter), in chunks cut at awkward places. The stream pauses after
 * `holdAfter` objects until `release()` is called, so a test can see the answer half-way.
 * `fail()` makes the next answers a 500.
 */
export async function startCopilot({ parts, holdAfter = parts.length } = {}) {
  const requests = [];
  let gate = null;
  let failing = false;
  const newGate = () => {
    let open;
    const promise = new Promise((resolve) => {
      open = resolve;
    });
    return { promise, open };
  };
  gate = newGate();
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', async () => {
      let parsed = null;
      try {
        parsed = JSON.parse(body);
      } catch {
        // recorded as null
      }
      requests.push(parsed);
      if (failing) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('the stand-in copilot is failing on purpose\n');
        return;
      }
      // No content-length: node sends the body chunked.
      res.writeHead(200, { 'content-type': 'application/json' });
      const encode = (objects) => objects.map((o) => JSON.stringify(o)).join('');
      const first = encode(parts.slice(0, holdAfter));
      const rest = encode(parts.slice(holdAfter));
      // Cut inside an object (and inside a string) to prove the relay decodes across chunks.
      for (const piece of splitAwkwardly(first)) {
        res.write(piece);
      }
      if (rest) {
        await gate.promise;
        for (const piece of splitAwkwardly(rest)) {
          res.write(piece);
        }
      }
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    endpoint: `http://127.0.0.1:${port}/invoke`,
    requests,
    release() {
      gate.open();
    },
    rearm() {
      gate = newGate();
    },
    fail(on = true) {
      failing = on;
    },
    async close() {
      gate.open();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function splitAwkwardly(text) {
  if (text.length < 8) return [text];
  const a = Math.floor(text.length / 3);
  const b = Math.floor((2 * text.length) / 3) + 1;
  return [text.slice(0, a), text.slice(a, b), text.slice(b)];
}

/** Debian's Chromium, headless, through playwright-core (which downloads no browser). */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
export const DESKTOP = { viewport: { width: 1280, height: 800 } };

/**
 * Opens the chat page of `server` on a chat. Resolves once the socket is open. Console errors
 * and page errors are collected in `page.problems` (a test asserts there are none).
 */
export async function openChat(browser, server, { agent, kind = 'supervisor', as = 'agent', keepalive, context } = {}) {
  const ctx = context ?? (await browser.newContext(DESKTOP));
  const page = await ctx.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.problems.push(`console: ${m.text()}`);
  });
  const hash = new URLSearchParams({ agent, chat: kind });
  if (kind === 'supervisor') hash.set('as', as);
  if (keepalive) hash.set('keepalive', String(keepalive));
  await page.goto(`${server.url}#${hash}`);
  await waitOpen(page);
  return page;
}

export async function waitOpen(page) {
  await page.waitForSelector('#status[data-state="open"]', { timeout: PATIENCE_MS });
}

/** Types `text` into the composer and sends it with Enter. */
export async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** The stored messages shown, in page order: { id, sender, text, mine }. */
export async function shown(page) {
  return page.$$eval('#messages li.msg[data-id]', (nodes) =>
    nodes.map((n) => ({
      id: n.dataset.id,
      sender: n.dataset.sender,
      text: n.querySelector('.bubble').textContent,
      mine: n.classList.contains('mine'),
    })),
  );
}

/** Waits until exactly `n` stored messages are shown, and returns them. */
export async function waitShown(page, n) {
  try {
    await page.waitForFunction(
      (count) => document.querySelectorAll('#messages li.msg[data-id]').length === count,
      n,
      { timeout: PATIENCE_MS },
    );
  } catch (e) {
    const now = await shown(page);
    throw new Error(`expected ${n} messages, page shows ${JSON.stringify(now)}: ${e.message}`);
  }
  return shown(page);
}

export function newAgent() {
  return randomUUID();
}

export function artifactPath(name) {
  mkdirSync(artifacts, { recursive: true });
  return path.join(artifacts, name);
}
