// The chat page against a server that requires tokens (--auth jwt): the token field, a valid
// token that opens the chat, and a refused one whose reason the page shows.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { DESKTOP, PATIENCE_MS, launchBrowser, newAgent, say, serverBin, startFreshServer, waitOpen, waitShown } from './harness.js';

const SECRET = 'the shared secret of the browser tests';

/** A token from the server's own `token` command. */
async function token(agent, { role = 'agent', ttl = '1h' } = {}) {
  const { stdout } = await promisify(execFile)(
    serverBin(),
    ['token', '--agent', agent, '--role', role, '--ttl', ttl],
    { env: { PATH: process.env.PATH, JIVA_JWT_SECRET: SECRET } },
  );
  return stdout.trim();
}

/** Problems other than the failed-resource lines Chromium logs for each 401/403 answer. */
function realProblems(page) {
  return page.problems.filter((p) => !p.includes('Failed to load resource'));
}

async function openPage(browser, server, agent) {
  const context = await browser.newContext(DESKTOP);
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.problems.push(`console: ${m.text()}`);
  });
  await page.goto(`${server.url}#agent=${agent}&chat=supervisor&as=agent`);
  return page;
}

async function waitRefused(page) {
  await page.waitForSelector('#status[data-state="refused"]', { timeout: PATIENCE_MS });
  return page.textContent('#refused');
}

describe('chat page with tokens required', () => {
  let server;
  let browser;

  before(async () => {
    // No clock skew allowed, so that a short-lived token expires when its `exp` says.
    server = await startFreshServer({
      env: { JIVA_AUTH: 'jwt', JIVA_JWT_SECRET: SECRET, JIVA_AUTH_LEEWAY_SECS: '0' },
    });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('a valid token opens the chat; it stays in sessionStorage, never in the URL', async () => {
    const agent = newAgent();
    const page = await openPage(browser, server, agent);
    // Without a token the server refuses, and the page says so and shows the token field.
    assert.equal(await waitRefused(page), 'Not signed in (401): a token is required');
    assert.equal(await page.isVisible('#token'), true);

    const mine = await token(agent);
    await page.fill('#token', mine);
    await page.click('#connect');
    await waitOpen(page);
    assert.equal(await page.isHidden('#refused'), true);
    await say(page, 'signed in');
    const [message] = await waitShown(page, 1);
    assert.deepEqual([message.sender, message.text], ['agent', 'signed in']);

    assert.ok(!page.url().includes(mine), 'the token is not in the page URL');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('jiva.token')), mine);

    // A reload reopens the chat with the stored token.
    await page.reload();
    await waitOpen(page);
    await waitShown(page, 1);
    assert.equal(await page.inputValue('#token'), mine);
    assert.deepEqual(realProblems(page), []);
    await page.context().close();
  });

  test('a token for another agent is refused with a readable reason', async () => {
    const agent = newAgent();
    const page = await openPage(browser, server, agent);
    await waitRefused(page);
    await page.fill('#token', await token(newAgent()));
    await page.click('#connect');
    await page.waitForFunction(
      () => document.querySelector('#refused').textContent.includes('403'),
      null,
      { timeout: PATIENCE_MS },
    );
    assert.equal(await page.textContent('#refused'), 'Not allowed (403): an agent may only open its own chats');
    assert.equal(await page.isDisabled('#send'), true, 'no sending on a refused chat');
    assert.deepEqual(realProblems(page), []);
    await page.context().close();
  });

  test('when the token expires the socket closes and the page says why', async () => {
    const agent = newAgent();
    const page = await openPage(browser, server, agent);
    await waitRefused(page);
    await page.fill('#token', await token(agent, { ttl: '2s' }));
    await page.click('#connect');
    await waitOpen(page);
    // The server closes the socket at expiry (4001); the page reconnects, asks first, and is
    // told the token has expired.
    await page.waitForFunction(
      () => document.querySelector('#refused').textContent.includes('expired'),
      null,
      { timeout: PATIENCE_MS },
    );
    assert.equal(await page.textContent('#refused'), 'Not signed in (401): the token has expired');
    assert.equal(await page.isDisabled('#send'), true);
    assert.deepEqual(realProblems(page), []);
    await page.context().close();
  });

  test('the server tells the page that a token is required', async () => {
    const response = await fetch(`${server.url}auth-mode`);
    assert.deepEqual(await response.json(), { token: 'required' });
    const health = await fetch(`${server.url}healthz`);
    assert.deepEqual(await health.json(), { status: 'ok' });
  });
});
