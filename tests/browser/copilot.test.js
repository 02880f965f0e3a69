// The chat page on the copilot chat, against a stand-in copilot that streams its answer.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  PATIENCE_MS,
  PHONE,
  artifactPath,
  launchBrowser,
  newAgent,
  openChat,
  say,
  shown,
  startCopilot,
  startFreshServer,
  waitShown,
} from './harness.js';

const PARTS = [
  { action: 'Agent', output: 'Hello' },
  { action: null, output: ' from the {test}' },
  { action: null, output: null },
  // Everything after this waits for `copilot.release()`.
  { action: 'Tool', output: 'Processing Results\n' },
  { action: 'Agent', output: ' copilot 🙂\nsecond line' },
];
const HOLD_AFTER = 3;
const ANSWER = 'Hello from the {test} copilot 🙂\nsecond line';

async function typingText(page) {
  return page.$eval('#messages li.typing .bubble', (n) => n.textContent).catch(() => null);
}

describe('copilot chat page', () => {
  let copilot;
  let server;
  let browser;

  before(async () => {
    copilot = await startCopilot({ parts: PARTS, holdAfter: HOLD_AFTER });
    server = await startFreshServer({ env: { COPILOT_ENDPOINT: copilot.endpoint } });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    await copilot?.close();
  });

  test('a copilot answer streams into a typing bubble and settles once', async () => {
    copilot.rearm();
    const agent = newAgent();
    const context = await browser.newContext(PHONE);
    const page = await openChat(browser, server, { agent, kind: 'copilot', context });
    assert.notEqual(await page.getAttribute('#as-field', 'hidden'), null, 'no sender choice on the copilot chat');

    await say(page, 'What is the {answer}?');
    await page.waitForFunction(
      () => document.querySelector('#messages li.typing .bubble')?.textContent === 'Hello from the {test}',
      null,
      { timeout: PATIENCE_MS },
    );
    const [question] = await shown(page);
    assert.equal(question.text, 'What is the {answer}?');
    assert.equal(question.mine, true);
    assert.equal(copilot.requests.at(-1)?.input, 'What is the {answer}?');
    await page.screenshot({ path: artifactPath('phone-copilot-typing.png') });

    copilot.release();
    await page.waitForSelector('#messages li.typing', { state: 'detached', timeout: PATIENCE_MS });
    const messages = await waitShown(page, 2);
    assert.equal(messages[1].sender, 'Copilot');
    assert.equal(messages[1].text, ANSWER, 'the stored answer, without the tool status');
    assert.equal(
      await page.locator('#messages li.msg', { hasText: 'second line' }).count(),
      1,
      'the answer is shown once',
    );
    assert.equal(await typingText(page), null);
    assert.equal(await page.locator('#messages li.error').count(), 0);
    await page.screenshot({ path: artifactPath('phone-copilot.png') });

    // The next turn sends the chat's earlier turns as history.
    copilot.rearm();
    await say(page, 'And again?');
    await page.waitForFunction(() => !!document.querySelector('#messages li.typing'), null, {
      timeout: PATIENCE_MS,
    });
    copilot.release();
    await page.waitForSelector('#messages li.typing', { state: 'detached', timeout: PATIENCE_MS });
    const four = await waitShown(page, 4);
    assert.deepEqual(
      four.map((m) => m.text),
      ['What is the {answer}?', ANSWER, 'And again?', ANSWER],
    );
    assert.deepEqual(copilot.requests.at(-1)?.chat_history, [
      { role: 'human', content: 'What is the {answer}?' },
      { role: 'ai', content: ANSWER },
    ]);
    assert.deepEqual(page.problems, []);
    await context.close();
  });

  test('Stop on a streaming answer stores the partial answer, marked, and the next question works', async () => {
    copilot.rearm();
    const agent = newAgent();
    const page = await openChat(browser, server, { agent, kind: 'copilot' });
    await say(page, 'Tell me everything');
    await page.waitForFunction(
      () => document.querySelector('#messages li.typing .bubble')?.textContent === 'Hello from the {test}',
      null,
      { timeout: PATIENCE_MS },
    );
    await page.click('#messages li.typing button.stop');
    await page.waitForSelector('#messages li.typing', { state: 'detached', timeout: PATIENCE_MS });
    const messages = await waitShown(page, 2);
    assert.deepEqual(messages.map((m) => [m.sender, m.text]), [
      ['agent', 'Tell me everything'],
      ['Copilot', 'Hello from the {test}\n\n[Answer stopped.]'],
    ]);

    copilot.rearm();
    await say(page, 'And now?');
    await page.waitForFunction(() => !!document.querySelector('#messages li.typing'), null, {
      timeout: PATIENCE_MS,
    });
    copilot.release();
    await page.waitForSelector('#messages li.typing', { state: 'detached', timeout: PATIENCE_MS });
    const four = await waitShown(page, 4);
    assert.equal(four[3].text, ANSWER);
    assert.equal(await page.locator('#messages li.error').count(), 0);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('a failing copilot shows the error and the typing bubble closes', async () => {
    copilot.fail(true);
    try {
      const agent = newAgent();
      const page = await openChat(browser, server, { agent, kind: 'copilot' });
      await say(page, 'Are you there?');
      await page.waitForSelector('#messages li.error', { timeout: PATIENCE_MS });
      const reason = await page.$eval('#messages li.error .bubble', (n) => n.textContent);
      assert.match(reason, /^⚠ \S/);
      // `turn_end` arrived: no bubble stays open. The question is shown; v1 has no shown-only
      // notice message (v0's `Combined` notice), the error says why.
      await page.waitForSelector('#messages li.typing', { state: 'detached', timeout: PATIENCE_MS });
      assert.deepEqual((await shown(page)).map((m) => m.text), ['Are you there?']);
      // The socket stays usable.
      assert.equal(await page.isDisabled('#send'), false);
      await page.context().close();
    } finally {
      copilot.fail(false);
    }
  });
});
