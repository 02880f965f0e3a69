// The chat page on v1: older history is paged in as the user scrolls up, each message once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, newAgent, openChat, shown, startFreshServer, waitShown } from './harness.js';

/** Stores `n` messages in the agent's supervisor chat over a v1 socket opened in `page`. */
async function store(page, server, agent, n) {
  const url = `ws://${server.addr}/?agentID=${agent}&secondaryID=supervisor`;
  await page.evaluate(
    ([url, n]) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url, ['jivachat.v1']);
        let acked = 0;
        ws.onopen = () => {
          for (let i = 0; i < n; i += 1) {
            const id = `fill-${i}`;
            ws.send(JSON.stringify({ type: 'send', client_id: id, sender: 'supervisor', text: `m${i}` }));
          }
        };
        ws.onmessage = (e) => {
          const frame = JSON.parse(e.data);
          if (frame.type === 'error') reject(new Error(e.data));
          if (frame.type === 'ack' && ++acked === n) {
            ws.close(1000);
            resolve();
          }
        };
        ws.onerror = () => reject(new Error('socket failed'));
      }),
    [url, n],
  );
}

describe('history paging', () => {
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

  test('scrolling to the top pages older messages in, each once and in order', async () => {
    const agent = newAgent();
    const filler = await openChat(browser, server, { agent: newAgent() });
    await store(filler, server, agent, 120);
    await filler.context().close();

    const page = await openChat(browser, server, { agent });
    const latest = await waitShown(page, 50);
    assert.deepEqual(latest.map((m) => m.text), Array.from({ length: 50 }, (_, i) => `m${i + 70}`));

    for (const count of [100, 120]) {
      await page.$eval('#chat', (c) => {
        c.scrollTop = 0;
      });
      await waitShown(page, count);
    }
    const all = await shown(page);
    assert.deepEqual(all.map((m) => m.text), Array.from({ length: 120 }, (_, i) => `m${i}`));
    assert.equal(new Set(all.map((m) => m.id)).size, 120, 'each message once');
    // Paging kept the reader where they were: not thrown to the bottom.
    const offset = await page.$eval('#chat', (c) => c.scrollHeight - c.scrollTop - c.clientHeight);
    assert.ok(offset > 100, `still reading the older messages (${offset}px from the bottom)`);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
