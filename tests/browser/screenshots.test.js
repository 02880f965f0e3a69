// Screenshots of the page (kept in artifacts/, git-ignored) and its layout on two screen sizes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  DESKTOP,
  PHONE,
  artifactPath,
  launchBrowser,
  newAgent,
  openChat,
  say,
  startFreshServer,
  waitShown,
} from './harness.js';

const CONVERSATION = [
  ['agent', 'Hi, a customer asks whether the refund for order 1042 went out.'],
  ['supervisor', 'It did, on Monday. It can take 3–5 working days to show.'],
  ['agent', 'Thanks! I will tell them.\nAnything else I should mention?'],
  ['supervisor', 'No, that is all 👍'],
];

describe('page layout', () => {
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

  for (const [name, device] of [
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ]) {
    test(`${name}: the page fits the screen and keeps a screenshot`, async () => {
      const agent = newAgent();
      const context = await browser.newContext(device);
      const agentPage = await openChat(browser, server, { agent, as: 'agent', context });
      const supervisorPage = await openChat(browser, server, { agent, as: 'supervisor', context });
      let n = 0;
      for (const [who, text] of CONVERSATION) {
        await say(who === 'agent' ? agentPage : supervisorPage, text);
        n += 1;
        await waitShown(agentPage, n);
      }
      await agentPage.fill('#text', 'Typing a reply…');

      // Nothing is wider than the screen, and the composer is on screen.
      const layout = await agentPage.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        innerWidth: window.innerWidth,
        composerBottom: document.querySelector('#composer').getBoundingClientRect().bottom,
        innerHeight: window.innerHeight,
      }));
      assert.ok(layout.scrollWidth <= layout.innerWidth, JSON.stringify(layout));
      assert.ok(layout.composerBottom <= layout.innerHeight + 1, JSON.stringify(layout));

      await agentPage.screenshot({ path: artifactPath(`${name}-supervisor.png`) });

      // On a phone the settings fold away while chatting, behind the "Chat…" button.
      assert.equal(await agentPage.isVisible('#setup'), name === 'desktop');
      assert.equal(await agentPage.isVisible('#toggle-setup'), name === 'phone');
      if (name === 'phone') {
        await agentPage.click('#toggle-setup');
        assert.equal(await agentPage.isVisible('#agent'), true);
        await agentPage.screenshot({ path: artifactPath('phone-settings.png') });
      }
      assert.deepEqual(agentPage.problems, []);
      await context.close();
    });
  }
});
