// Test support: Debian's Chromium through playwright-core, REST helpers, console
// collection and screenshots.

import { chromium } from 'playwright-core';
import { mkdirSync, copyFileSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import path from 'node:path';

export const BASE = process.env.DOCFAN_URL;
export const TOKENS = {
  alice: process.env.ALICE_TOKEN,
  bob: process.env.BOB_TOKEN,
  carol: process.env.CAROL_TOKEN,
  dave: process.env.DAVE_TOKEN,
};
/** A token for alice that expires in five minutes. */
export const ALICE_SHORT_TOKEN = process.env.ALICE_SHORT_TOKEN;
export const ALICE_LINK = process.env.ALICE_LINK;
const ARTIFACTS = process.env.DOCFAN_WEB_ARTIFACTS;
const DOCS = process.env.DOCFAN_DOCS_DIR;

if (!BASE || !TOKENS.alice || !TOKENS.bob || !TOKENS.carol) {
  throw new Error('run these tests with tests/web/run (it starts docfan and mints tokens)');
}

export const LAUNCH_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
];

/**
 * Console messages the browser itself logs for HTTP answers the contract requires: a
 * failed fetch is reported as "Failed to load resource" even when the page expects it.
 * Only these exact status/URL pairs are tolerated; everything else fails the run.
 */
const EXPECTED_NETWORK = [
  // GET /documents/{id}/analysis is 404 until the first analysis of a document.
  { status: 404, url: /\/documents\/[0-9a-f-]+\/analysis$/ },
  // A title save from a version that typing has since moved past: retried on the newer one.
  { status: 412, url: /\/documents\/[0-9a-f-]+$/ },
];

/** Tokens are secrets, even test ones: keep them out of test output. */
const redact = (text) => text.replace(/token=[\w.-]+/g, 'token=…');

export class Browser {
  async launch() {
    // playwright starts Chromium with a fresh, temporary --user-data-dir of its own and
    // removes it on close; each context below is a separate, empty browser profile.
    this.browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      headless: true,
      args: LAUNCH_ARGS,
    });
    this.problems = [];
    this.tolerated = [];
  }

  /** The problems, each once, with how often it happened. */
  summary() {
    const counts = new Map();
    for (const problem of this.problems) counts.set(problem, (counts.get(problem) ?? 0) + 1);
    return [...counts].map(([problem, n]) => (n > 1 ? `${problem} (×${n})` : problem));
  }

  async close() {
    await this.browser?.close();
  }

  /**
   * A fresh context (its own storage) with console collection on its pages. `tolerate`
   * lists console messages this page is expected to log (e.g. the 401s of an expired
   * sign-in), as regular expressions over the message text.
   */
  async page(name, viewport = { width: 1280, height: 800 }, { tolerate = [] } = {}) {
    const context = await this.browser.newContext({ viewport, deviceScaleFactor: 1, reducedMotion: 'reduce' });
    return this.watch(name, await context.newPage(), tolerate);
  }

  /** Another page (tab) in the context of `page`, watched the same way. */
  async tab(name, page, { tolerate = [] } = {}) {
    return this.watch(name, await page.context().newPage(), tolerate);
  }

  watch(name, page, tolerate) {
    page.setDefaultTimeout(10_000);
    page.on('console', (message) => {
      const type = message.type();
      if (type !== 'error' && type !== 'warning') return;
      const text = message.text();
      const url = message.location()?.url ?? '';
      const status = Number(/status of (\d{3})/.exec(text)?.[1]);
      if (text.startsWith('Failed to load resource') &&
          EXPECTED_NETWORK.some((e) => e.status === status && e.url.test(url.replace(/\?.*$/, '')))) {
        this.tolerated.push(`${name}: ${status} ${url}`);
        return;
      }
      if (tolerate.some((pattern) => pattern.test(text))) {
        this.tolerated.push(`${name}: ${redact(text)}`);
        return;
      }
      this.problems.push(`${name} console ${type}: ${redact(text)} (${redact(url)})`);
    });
    page.on('pageerror', (error) => this.problems.push(`${name} page error: ${redact(error.message)}`));
    return page;
  }
}

/**
 * An HS256 token for `user` that expires in `seconds`, signed with the server's secret
 * (tests/web/run exports it), for tests that need an expiry they can wait for.
 */
export function tokenExpiringIn(user, seconds) {
  const secret = process.env.DOCFAN_JWT_SECRET;
  if (!secret) throw new Error('DOCFAN_JWT_SECRET is not set: run these tests with tests/web/run');
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: user, iat: now, exp: now + seconds })}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

export async function shot(page, name) {
  if (!ARTIFACTS) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  if (name === 'editor' && process.env.DOCFAN_WEB_UPDATE_DOCS === '1' && DOCS) {
    mkdirSync(DOCS, { recursive: true });
    copyFileSync(file, path.join(DOCS, 'editor.png'));
  }
}

/** A REST call as `user`; returns { status, body, etag }. */
export async function rest(user, method, url, { body, ifMatch } = {}) {
  const headers = { Authorization: `Bearer ${TOKENS[user]}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (ifMatch !== undefined) headers['If-Match'] = `"${ifMatch}"`;
  const response = await fetch(BASE + url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null, etag: response.headers.get('etag') };
}

/** Polls `check` until it returns a truthy value. */
export async function eventually(check, { timeout = 10_000, every = 150, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

export async function signIn(page, user) {
  await page.goto(`${BASE}/#token=${TOKENS[user]}`);
  await page.locator('#who-name', { hasText: user }).waitFor();
}
