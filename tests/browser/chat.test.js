// The chat page on the supervisor chat: fan-out between pages, history, keepalives, reconnects.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  DESKTOP,
  PATIENCE_MS,
  launchBrowser,
  newAgent,
  openChat,
  say,
  shown,
  startFreshServer,
  startServer,
  tempDir,
  waitOpen,
  waitShown,
} from './harness.js';

describe('supervisor chat page', () => {
  let server;
  let browser;

  before(async () => {
    server = await startFreshServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('the page, its script and its style are served with their content types', async () => {
    for (const [path, type] of [
      ['', 'text/html; charset=utf-8'],
      ['app.js', 'text/javascript; charset=utf-8'],
      ['app.css', 'text/css; charset=utf-8'],
    ]) {
      const response = await fetch(`${server.url}${path}`);
      assert.equal(response.status, 200, path);
      assert.equal(response.headers.get('content-type'), type, path);
    }
  });

  test('two pages on the same supervisor chat see each other\'s messages in order', async () => {
    const agent = newAgent();
    const asAgent = await openChat(browser, server, { agent, as: 'agent' });
    const asSupervisor = await openChat(browser, server, { agent, as: 'supervisor' });

    await say(asAgent, 'hello from the agent');
    await waitShown(asSupervisor, 1);
    await say(asSupervisor, 'hello from a supervisor');
    await waitShown(asAgent, 2);
    await say(asAgent, 'third, with <b>markup</b> & an <img src=x onerror="window.owned=1">');

    const expected = [
      ['agent', 'hello from the agent'],
      ['supervisor', 'hello from a supervisor'],
      ['agent', 'third, with <b>markup</b> & an <img src=x onerror="window.owned=1">'],
    ];
    const a = await waitShown(asAgent, 3);
    const s = await waitShown(asSupervisor, 3);
    assert.deepEqual(a.map((m) => [m.sender, m.text]), expected);
    assert.deepEqual(s.map((m) => [m.sender, m.text]), expected);
    assert.deepEqual(a.map((m) => m.id), s.map((m) => m.id), 'same ids in the same order');
    assert.deepEqual(a.map((m) => m.mine), [true, false, true], 'the agent page marks its own');
    assert.deepEqual(s.map((m) => m.mine), [false, true, false], 'the supervisor page marks its own');

    // Text is text: nothing of it became an element.
    for (const page of [asAgent, asSupervisor]) {
      assert.equal(await page.locator('#messages b, #messages img').count(), 0);
      assert.equal(await page.evaluate(() => window.owned), undefined);
      assert.deepEqual(page.problems, []);
    }
    await asAgent.context().close();
    await asSupervisor.context().close();
  });

  test('a reloaded page shows the history once, oldest first', async () => {
    const agent = newAgent();
    const page = await openChat(browser, server, { agent, as: 'supervisor' });
    for (const text of ['one', 'two', 'three']) {
      await say(page, text);
    }
    const before = await waitShown(page, 3);
    assert.deepEqual(before.map((m) => m.text), ['one', 'two', 'three']);

    await page.reload();
    await waitOpen(page);
    const again = await waitShown(page, 3);
    assert.deepEqual(again, before, 'same messages, ids and order after a reload');
    assert.equal(await page.inputValue('#agent'), agent, 'the reload kept the chat');
    assert.equal(await page.inputValue('#as'), 'supervisor');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('a page shows who is in the chat and who is typing', async () => {
    const agent = newAgent();
    const a = await openChat(browser, server, { agent, as: 'agent' });
    await a.waitForFunction(() => /^1 here: .*\(you\)$/.test(document.querySelector('#presence').textContent), null, {
      timeout: PATIENCE_MS,
    });
    const b = await openChat(browser, server, { agent, as: 'supervisor' });
    for (const page of [a, b]) {
      await page.waitForFunction(() => document.querySelector('#presence').textContent.startsWith('2 here: '), null, {
        timeout: PATIENCE_MS,
      });
    }
    await b.fill('#text', 'writing a rep');
    await a.waitForFunction(() => document.querySelector('#typing').textContent.endsWith(' is typing…'), null, {
      timeout: PATIENCE_MS,
    });
    assert.equal(await b.textContent('#typing'), '', 'one does not see oneself typing');
    // The indicator goes: the sender's `active: false` (unless the server's one-a-second limit
    // dropped it), else its 5 s expiry.
    await b.press('#text', 'Enter');
    await waitShown(a, 1);
    await a.waitForFunction(() => document.querySelector('#typing').textContent === '', null, {
      timeout: PATIENCE_MS,
    });
    await b.context().close();
    await a.waitForFunction(() => document.querySelector('#presence').textContent.startsWith('1 here: '), null, {
      timeout: PATIENCE_MS,
    });
    assert.deepEqual(a.problems, []);
    await a.context().close();
  });

  test('keepalives are sent as v1 pings, answered by pong and never shown', async () => {
    const agent = newAgent();
    const context = await browser.newContext(DESKTOP);
    const sent = [];
    const received = [];
    context.on('page', (p) =>
      p.on('websocket', (ws) => {
        ws.on('framesent', (f) => sent.push(f.payload));
        ws.on('framereceived', (f) => received.push(JSON.parse(f.payload)));
      }),
    );
    const page = await openChat(browser, server, { agent, keepalive: 1, context });
    const pings = () => sent.filter((p) => JSON.parse(p).type === 'ping').length;
    await page.waitForFunction(() => true); // let the socket's handlers attach
    const deadline = Date.now() + PATIENCE_MS;
    while (pings() < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(pings() >= 2, `sent: ${JSON.stringify(sent)}`);
    await say(page, 'after the keepalives');
    const [message] = await waitShown(page, 1);
    assert.equal(message.text, 'after the keepalives');
    assert.ok(received.some((f) => f.type === 'pong'), 'pings are answered');
    assert.equal(await page.locator('#messages li.msg').count(), 1, 'only the message is shown');
    assert.equal(await page.locator('#messages li.error').count(), 0);
    await context.close();
  });
});

describe('reconnecting', () => {
  test('after a server restart the page resumes, sends what was typed meanwhile once, and shows each message once', async () => {
    const dataDir = tempDir('jiva-browser-restart-');
    let server = await startServer({ dataDir });
    const browser = await launchBrowser();
    try {
      const agent = newAgent();
      const context = await browser.newContext(DESKTOP);
      const sockets = [];
      context.on('page', (p) => p.on('websocket', (ws) => sockets.push(ws.url())));
      const page = await openChat(browser, server, { agent, context });
      await say(page, 'before the restart');
      await waitShown(page, 1);
      await page.waitForSelector('#messages li[data-state="sent"]', { timeout: PATIENCE_MS });

      await server.stop();
      await page.waitForSelector('#status[data-state="waiting"]', { timeout: PATIENCE_MS });
      // Typed while disconnected: shown at once as pending, not stored yet.
      await say(page, 'typed while disconnected');
      await page.waitForSelector('#messages li[data-state="pending"]', { timeout: PATIENCE_MS });
      assert.equal((await shown(page)).length, 1, 'the pending message is not shown as stored');

      server = await startServer({ dataDir, port: server.port });
      await waitOpen(page);
      const messages = await waitShown(page, 2);
      assert.deepEqual(messages.map((m) => m.text), ['before the restart', 'typed while disconnected']);
      await page.waitForSelector('#messages li[data-state="pending"]', {
        state: 'detached',
        timeout: PATIENCE_MS,
      });
      assert.equal(await page.locator('#messages li[data-state="sent"]').count(), 2);
      await say(page, 'after the restart');
      const all = await waitShown(page, 3);
      assert.equal(new Set(all.map((m) => m.id)).size, 3, 'nothing is shown twice');
      assert.ok(
        sockets.at(-1).includes('&since='),
        `the reconnection resumes after the last message: ${sockets.join(' ')}`,
      );
      assert.deepEqual(page.problems.filter((p) => !p.includes('WebSocket')), []);
    } finally {
      await browser.close();
      await server.stop();
    }
  });
});
