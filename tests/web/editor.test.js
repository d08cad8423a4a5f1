// The web editor in headless Chromium: people co-editing one document live (typing at
// once, no dialog), others' carets, a viewer, drafts that survive an expired sign-in,
// search, history and restoring a version, analysis, phone width, and a console free of
// errors. The steps share one server and run in order.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Browser, BASE, ALICE_LINK, ALICE_SHORT_TOKEN, TOKENS, rest, shot, eventually, signIn, tokenExpiringIn } from './browser.js';

const browser = new Browser();
/** @type {import('playwright-core').Page} */
let alice;
/** @type {import('playwright-core').Page} */
let bob;
let docId;
let hostileId;
const TITLE = 'Launch plan';

before(async () => {
  await browser.launch();
  alice = await browser.page('alice');
  bob = await browser.page('bob');
});

after(async () => {
  await browser.close();
});

const body = (page) => page.locator('#body-input');
const status = (page) => page.locator('#editor-status');

/** Everything typed on `page` is committed (autosave; Ctrl-S only hurries it). */
async function waitForSaved(page) {
  await page.locator('#sync-state[data-state="saved"]').waitFor();
}

async function serverDoc(id = docId) {
  const answer = await rest('alice', 'GET', `/documents/${id}`);
  assert.equal(answer.status, 200);
  return answer.body;
}

/** Puts the caret of `page` right after the first `needle` in the body. */
/** Opens every typing session in the history panel, as a reader expanding them would. */
async function openSessions(page) {
  await page.evaluate(() => document.querySelectorAll('#history-list details').forEach((d) => { d.open = true; }));
}

async function caretAfter(page, needle) {
  await body(page).evaluate((node, text) => {
    node.focus();
    const at = node.value.indexOf(text) + text.length;
    node.setSelectionRange(at, at);
  }, needle);
}

const count = (text, ch) => text.split(ch).length - 1;

test('the page is served with a strict content security policy', async () => {
  const response = await fetch(`${BASE}/`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^text\/html/);
  const csp = response.headers.get('content-security-policy');
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /connect-src 'self' ws: wss:/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  for (const asset of ['app.js', 'operation.js', 'collab.js', 'presence.js', 'drafts.js']) {
    const script = await fetch(`${BASE}/assets/${asset}`);
    assert.equal(script.status, 200, asset);
    assert.match(script.headers.get('content-type'), /^text\/javascript/);
  }
});

test('alice signs in from the link `docfan token` prints; the token leaves the URL', async () => {
  assert.ok(ALICE_LINK?.startsWith(BASE), `unexpected link ${ALICE_LINK}`);
  await alice.goto(ALICE_LINK);
  await alice.locator('#who-name', { hasText: 'alice' }).waitFor();
  assert.ok(!alice.url().includes('token'), `token still in ${alice.url()}`);
  const stored = await alice.evaluate(() => localStorage.getItem('docfan.token'));
  assert.ok(stored?.split('.').length === 3);
  await alice.reload();
  await alice.locator('#who-name', { hasText: 'alice' }).waitFor();
});

test('one sign-in covers every tab of the browser, and so does signing out', async () => {
  const first = await browser.page('tabs-1');
  const second = await browser.tab('tabs-2', first);
  await second.goto(`${BASE}/`);
  await second.locator('#signed-out:not([hidden])').waitFor();
  await first.goto(`${BASE}/#token=${TOKENS.carol}`);
  await first.locator('#who-name', { hasText: 'carol' }).waitFor();
  // The other tab, already open, follows without a reload.
  await second.locator('#who-name', { hasText: 'carol' }).waitFor();
  const third = await browser.tab('tabs-3', first);
  await third.goto(`${BASE}/`);
  await third.locator('#who-name', { hasText: 'carol' }).waitFor();
  await first.click('#sign-out');
  await second.locator('#signed-out:not([hidden])').waitFor();
  await third.locator('#signed-out:not([hidden])').waitFor();
  await first.context().close();
});

test('alice creates a document, types in it with no Save button, and shares it', async () => {
  for (const title of ['Meeting notes', 'Reading list', 'Budget 2027']) {
    const created = await rest('alice', 'POST', '/documents', { body: { title, body: `${title}: first draft.` } });
    assert.equal(created.status, 201);
  }
  await alice.reload();
  await alice.locator('#doc-list .doc-title', { hasText: 'Budget 2027' }).waitFor();

  await alice.click('#new-doc');
  await alice.fill('#new-title', TITLE);
  await alice.keyboard.press('Enter');
  await alice.locator('#editor:not([hidden])').waitFor();
  await alice.locator('#new-dialog').waitFor({ state: 'hidden' });
  docId = new URLSearchParams(new URL(alice.url()).hash.slice(1)).get('doc');
  assert.ok(docId, 'the open document is in the fragment');
  assert.equal(await alice.evaluate(() => document.activeElement?.id), 'body-input', 'after creating, focus is in the body');
  assert.equal(await alice.locator('#save').count(), 0, 'no Save button');

  await alice.keyboard.type('Goals\n');
  await body(alice).fill('Goals\nShip the editor.\nInvite the team.\n\nRisks\nNone yet.\n\nNotes\nThe zeppelin demo is on Friday.');
  await waitForSaved(alice);
  await eventually(async () => (await serverDoc()).body.includes('zeppelin'), { what: 'the typed text on the server' });

  await alice.click('#share');
  await alice.fill('#share-user', 'bob');
  await alice.selectOption('#share-role', 'editor');
  await alice.click('#share-add');
  await alice.fill('#share-user', 'carol');
  await alice.selectOption('#share-role', 'viewer');
  await alice.click('#share-add');
  await shot(alice, 'share');
  await alice.click('#share-form button[type=submit]');
  await status(alice).filter({ hasText: 'Sharing saved' }).waitFor();
  const doc = await serverDoc();
  assert.deepEqual(doc.collaborators, { bob: 'editor', carol: 'viewer' });
});

test('bob sees the shared document in his list', async () => {
  await signIn(bob, 'bob');
  const item = bob.locator(`#doc-list button[data-id="${docId}"]`);
  await item.waitFor();
  assert.match(await item.textContent(), /editor · alice/);
  await shot(bob, 'document-list');
  await item.click();
  await bob.locator('#title-input').waitFor();
  assert.equal(await bob.inputValue('#title-input'), TITLE);
  assert.ok(await bob.locator('#share').isHidden(), 'only the owner shares');
  assert.ok(await bob.locator('#delete').isHidden(), 'only the owner deletes');
});

test('the live connection is up on both pages', async () => {
  for (const page of [alice, bob]) {
    await page.locator('#connection[data-state="live"]').waitFor();
  }
});

test('alice and bob each see the other\'s typing live, with who made it', async () => {
  await caretAfter(alice, 'Ship the editor');
  await alice.keyboard.type(' by Friday');
  await eventually(async () => (await body(bob).inputValue()).includes('Ship the editor by Friday.'), { what: "alice's typing on bob's page" });
  await bob.locator('#doc-meta', { hasText: 'changed by alice' }).waitFor();

  await body(bob).click();
  await bob.keyboard.press('Control+End');
  await bob.keyboard.type('\nBob reviews the rollout plan.');
  await eventually(async () => (await body(alice).inputValue()).includes('rollout plan.'), { what: "bob's typing on alice's page" });
  await alice.locator('#doc-meta', { hasText: 'changed by bob' }).waitFor();
  await waitForSaved(bob);
  await shot(alice, 'editor-live');
});

test('alice and bob typing in the same paragraph at the same time converge, with no dialog', async () => {
  await caretAfter(alice, 'Invite the team');
  await caretAfter(bob, 'Invite the team');
  const mine = 'QQQQQQQQQQQQ';
  const theirs = 'ZZZZZZZZZZZZ';
  await Promise.all([
    alice.keyboard.type(` ${mine}`, { delay: 35 }),
    bob.keyboard.type(` ${theirs} 😀`, { delay: 35 }),
  ]);
  await Promise.all([waitForSaved(alice), waitForSaved(bob)]);
  const server = await eventually(async () => {
    const doc = await serverDoc();
    const [a, b] = [await body(alice).inputValue(), await body(bob).inputValue()];
    return a === doc.body && b === doc.body ? doc : null;
  }, { what: 'both pages and the server to hold one text' });
  assert.equal(count(server.body, 'Q'), mine.length, "every one of alice's keystrokes, once");
  assert.equal(count(server.body, 'Z'), theirs.length, "every one of bob's keystrokes, once");
  assert.equal(count(server.body, '😀'), 1, 'the emoji is whole');
  assert.match(server.body, /Invite the team[ QZ😀]+\./, 'both typed into the same sentence');
  for (const page of [alice, bob]) {
    assert.equal(await page.locator('dialog[open]').count(), 0, 'no dialog');
    assert.ok(await page.locator('#doc-banner').isHidden(), 'no banner');
  }
});

test('a whole-document save by someone else merges into text being typed', async () => {
  await caretAfter(alice, 'None yet.');
  const current = await serverDoc();
  const put = rest('bob', 'PUT', `/documents/${docId}`, {
    body: { title: TITLE, body: current.body.replace('Goals', 'Goals for Q1') },
    ifMatch: current.version,
  });
  await alice.keyboard.type(' Maybe the weather.', { delay: 20 });
  assert.equal((await put).status, 200);
  await waitForSaved(alice);
  const doc = await eventually(async () => {
    const server = await serverDoc();
    return (await body(alice).inputValue()) === server.body ? server : null;
  }, { what: 'alice to hold the server text' });
  assert.match(doc.body, /Goals for Q1/);
  assert.match(doc.body, /None yet\. Maybe the weather\./);
  assert.equal(await alice.locator('dialog[open]').count(), 0);
});

test('a new title is saved on its own while someone types, and reaches them', async () => {
  await caretAfter(bob, 'rollout plan.');
  const typing = bob.keyboard.type(' Soon.', { delay: 40 });
  await alice.fill('#title-input', `${TITLE} v2`);
  await typing;
  await Promise.all([waitForSaved(alice), waitForSaved(bob)]);
  await eventually(async () => (await serverDoc()).title === `${TITLE} v2`, { what: 'the new title on the server' });
  await eventually(async () => (await bob.inputValue('#title-input')) === `${TITLE} v2`, { what: "the new title on bob's page" });
  assert.match((await serverDoc()).body, /rollout plan\. Soon\./);
  await eventually(async () => (await body(alice).inputValue()).includes('rollout plan. Soon.'), { what: "bob's typing on alice's page" });
  assert.equal(await alice.locator('dialog[open]').count(), 0);
});

test('a third person sees where the other two are, carets and all', async () => {
  const carol = await browser.page('carol');
  await signIn(carol, 'carol');
  await carol.goto(`${BASE}/#doc=${docId}`);
  await carol.locator('#title-input').waitFor();
  // Alice selects a word, bob puts his caret somewhere else.
  await body(alice).evaluate((node) => {
    node.focus();
    const at = node.value.indexOf('zeppelin');
    node.setSelectionRange(at, at + 'zeppelin'.length);
  });
  await caretAfter(bob, 'Risks');
  await bob.keyboard.press('ArrowLeft');
  for (const user of ['alice', 'bob']) {
    await carol.locator(`#presence-list .avatar[data-user="${user}"]`).waitFor();
    await carol.locator(`#body-overlay .remote-caret[data-user="${user}"]`).waitFor();
  }
  await carol.locator('#body-overlay .remote-selection[data-user="alice"]', { hasText: 'zeppelin' }).waitFor();
  // The caret is drawn where the text is: bob's is on the line of "Risks".
  // (The marks are redrawn as things move: measure until one stays put long enough.)
  const caretBox = await eventually(() => carol.locator('#body-overlay .remote-caret[data-user="bob"]').boundingBox(), { what: "bob's caret on the page" });
  const textBox = await body(carol).boundingBox();
  assert.ok(caretBox.y > textBox.y && caretBox.y < textBox.y + textBox.height, 'the caret is inside the text box');
  // Alice and bob see each other too, never themselves.
  await alice.locator('#presence-list .avatar[data-user="bob"]').waitFor();
  assert.equal(await alice.locator('#presence-list .avatar[data-user="alice"]').count(), 0);
  await shot(carol, 'presence');
  await body(carol).click();
  await alice.locator('#presence-list .avatar[data-user="carol"]').waitFor();
  await carol.context().close();
  await alice.locator('#presence-list .avatar[data-user="carol"]').waitFor({ state: 'detached' });
});

test('a viewer cannot edit', async () => {
  const carol = await browser.page('carol');
  await signIn(carol, 'carol');
  await carol.locator(`#doc-list button[data-id="${docId}"]`).click();
  await carol.locator('#readonly-badge:not([hidden])').waitFor();
  assert.equal(await carol.locator('#body-input').getAttribute('readonly'), '');
  assert.equal(await carol.locator('#title-input').getAttribute('readonly'), '');
  assert.ok(await carol.locator('#sync-state').isHidden(), 'nothing to save for a viewer');
  assert.ok(await carol.locator('#share').isHidden());
  const before = await body(carol).inputValue();
  await body(carol).click();
  await carol.keyboard.type('vandalism');
  await carol.keyboard.press('Control+s');
  assert.equal(await body(carol).inputValue(), before);
  assert.equal((await serverDoc()).body, before);
  await shot(carol, 'viewer');
  await carol.context().close();
});

test('the analysis panel shows the latest analysis and follows new ones', async () => {
  const words = alice.locator('#analysis-words');
  await words.waitFor({ timeout: 15_000 });
  const before = Number((await words.textContent()).replace(/\D/g, ''));
  assert.ok(before > 0);
  await body(alice).fill(`${await body(alice).inputValue()}\n\nNext steps\nWrite the release notes, record a demo, and collect feedback from the first teams.`);
  await alice.keyboard.press('Control+s');
  await waitForSaved(alice);
  const version = (await serverDoc()).version;
  // Refreshed by analysis.completed, without reloading.
  await alice.locator('#analysis-body', { hasText: `Analysed version ${version}` }).waitFor({ timeout: 15_000 });
  assert.ok(Number((await words.textContent()).replace(/\D/g, '')) > before, 'more words after adding a paragraph');
  // The history panel follows too.
  await alice.locator(`#history-list .history-item[data-version="${version}"]`).waitFor();
  await alice.mouse.move(1, 1);
  await alice.evaluate(() => {
    document.activeElement?.blur();
    window.scrollTo(0, 0);
    document.getElementById('history-list').scrollTop = 0;
  });
  await shot(alice, 'editor');
});

test('text from documents and snippets is never run as markup', async () => {
  const hostile = '<img src=x onerror="window.__pwned=1"> & <b>bold</b>';
  const created = await rest('alice', 'POST', '/documents', {
    body: { title: `Quarantine ${hostile}`, body: `quarantine ${hostile} <script>window.__pwned=2</script>` },
  });
  assert.equal(created.status, 201);
  hostileId = created.body.id;
  await alice.reload();
  await alice.locator(`#doc-list button[data-id="${hostileId}"]`).click();
  await eventually(async () => (await alice.inputValue('#title-input')).startsWith('Quarantine <img'), { what: 'the hostile document' });
  assert.match(await alice.inputValue('#body-input'), /<script>/);
  assert.equal(await alice.locator('#doc-list img, #doc-list b, #editor img, #editor-pane script').count(), 0);
  assert.equal(await alice.evaluate(() => window.__pwned), undefined);
  // Snippets are rebuilt from text and <mark> only; anything else is shown as text.
  const rebuilt = await alice.evaluate(async () => {
    const { snippetNodes } = await import('/assets/panels.js');
    const box = document.createElement('div');
    box.append(...snippetNodes('a <mark>b</mark> <img src=x onerror="window.__pwned=3"> &amp; c'));
    const good = document.createElement('div');
    good.append(...snippetNodes('x &lt;y&gt; <mark>z</mark> &amp; &quot;q&quot;'));
    return { bad: box.innerHTML, good: good.innerHTML };
  });
  assert.doesNotMatch(rebuilt.bad, /<img|<mark>/);
  assert.equal(rebuilt.good, 'x &lt;y&gt; <mark>z</mark> &amp; "q"');
  await alice.goto(`${BASE}/#doc=${docId}`);
  const { title } = await serverDoc();
  await eventually(async () => (await alice.inputValue('#title-input')) === title, { what: 'the launch plan again' });
});

test('search finds the document, with the match highlighted', async () => {
  const input = alice.locator('#search-input');
  const search = async (q, result) => {
    await input.fill(q);
    await eventually(async () => {
      await input.press('Enter');
      return (await result.count()) > 0;
    }, { what: `a search result for ${q}`, every: 500 });
  };
  await search('zeppelin', alice.locator('#search-list .result', { hasText: TITLE }));
  assert.equal((await alice.locator('#search-list mark').first().textContent()).toLowerCase(), 'zeppelin');
  await shot(alice, 'search');
  // Markup in a title or body comes back as text.
  await search('quarantine', alice.locator('#search-list .result', { hasText: 'Quarantine <img' }));
  assert.equal(await alice.locator('#search-list img, #search-list b, #search-list script').count(), 0);
  assert.equal(await alice.evaluate(() => window.__pwned), undefined);
  await input.press('Escape');
  assert.ok(await alice.locator('#search-results').isHidden(), 'Escape clears the search');
});

test('history shows who changed what, and a version\'s diff', async () => {
  await alice.click('#history-refresh');
  const items = alice.locator('#history-list .history-item');
  const current = await serverDoc();
  await eventually(async () => (await items.count()) >= current.version, { what: `${current.version} history entries` });
  const text = await alice.locator('#history-list').textContent();
  assert.match(text, /alice created the document/);
  assert.match(text, /bob changed body/);
  assert.match(text, /alice changed collaborators/);
  // The first version with the zeppelin in it.
  let first = 0;
  for (let v = 1; v <= current.version && !first; v++) {
    const version = await rest('alice', 'GET', `/documents/${docId}/versions/${v}`);
    assert.equal(version.status, 200);
    if (version.body.body.includes('zeppelin')) first = v;
  }
  await openSessions(alice);
  await alice.locator(`#history-list .history-item[data-version="${first}"]`).click();
  const dialog = alice.locator('#version-dialog');
  await dialog.locator('.diff .add', { hasText: 'zeppelin' }).waitFor();
  await shot(alice, 'history');
  await alice.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
});

test('a typing session reads as one line in the history', async () => {
  const created = await rest('alice', 'POST', '/documents', { body: { title: 'Typed', body: '' } });
  const id = created.body.id;
  let version = 1;
  for (const letter of 'hello world!') {
    const answer = await rest('alice', 'POST', `/documents/${id}/edits`, {
      body: { baseVersion: version, ops: version === 1 ? [letter] : [version - 1, letter] },
    });
    assert.equal(answer.status, 200);
    version = answer.body.version;
  }
  const page = await browser.page('alice-typing');
  await signIn(page, 'alice');
  await page.goto(`${BASE}/#doc=${id}`);
  const session = page.locator('#history-list .history-session[data-first="2"][data-last="13"]');
  await session.locator('summary', { hasText: 'alice typed: 12 versions (v2–v13)' }).waitFor({ timeout: 15_000 });
  // The newest session is open: each version is still there to open.
  await session.locator('.history-item[data-version="7"]').click();
  await page.locator('#version-dialog').waitFor();
  assert.equal(await page.locator('#history-list > li > .history-item[data-version="1"]').count(), 1, 'the creation stands alone');
  await page.context().close();
});

test('restoring a version makes a new version with its text', async () => {
  const before = await serverDoc();
  const old = (await rest('alice', 'GET', `/documents/${docId}/versions/3`)).body;
  assert.notEqual(old.body, before.body);
  await alice.click('#history-refresh');
  await alice.locator('#history-list .history-item[data-version="3"]').waitFor({ state: 'attached' });
  await openSessions(alice);
  await alice.locator('#history-list .history-item[data-version="3"]').click();
  const dialog = alice.locator('#version-dialog');
  await dialog.waitFor({ state: 'visible' });
  await alice.click('#version-restore');
  await dialog.waitFor({ state: 'hidden' });
  await waitForSaved(alice);
  const after = await eventually(async () => {
    const doc = await serverDoc();
    return doc.body === old.body ? doc : null;
  }, { what: 'the restored text on the server' });
  assert.ok(after.version > before.version, 'a new version, not a rewrite of history');
  assert.equal(await body(alice).inputValue(), old.body);
  await eventually(async () => (await body(bob).inputValue()) === old.body, { what: 'the restored text on bob\'s page' });
  // And back to where it was, the same way.
  const latest = await alice.locator(`#history-list .history-item[data-version="${before.version}"]`);
  await alice.click('#history-refresh');
  await latest.click();
  await alice.click('#version-restore');
  await eventually(async () => (await serverDoc()).body === before.body, { what: 'the text before the restore' });
});

test('the owner deletes a document after confirming', async () => {
  const created = await rest('alice', 'POST', '/documents', { body: { title: 'Scratch', body: '' } });
  // Following a link to another document opens it in place.
  await alice.goto(`${BASE}/#doc=${created.body.id}`);
  await eventually(async () => (await alice.inputValue('#title-input')) === 'Scratch', { what: 'the linked document' });
  await alice.click('#delete');
  await alice.locator('#delete-dialog').waitFor({ state: 'visible' });
  await alice.click('#delete-form button[type=submit]');
  await alice.locator('#delete-dialog').waitFor({ state: 'hidden' });
  await alice.locator(`#doc-list button[data-id="${created.body.id}"]`).waitFor({ state: 'detached' });
  assert.equal((await rest('alice', 'GET', `/documents/${created.body.id}`)).status, 404);
});

test('the page is usable at phone width', async () => {
  const phone = await browser.page('bob-phone', { width: 390, height: 844 });
  await signIn(phone, 'bob');
  await phone.locator(`#doc-list button[data-id="${docId}"]`).waitFor();
  const overflow = () => phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(await overflow() <= 0, 'no horizontal scrolling on the list');
  await shot(phone, 'phone-list');
  await phone.locator(`#doc-list button[data-id="${docId}"]`).click();
  await phone.locator('#body-input').waitFor();
  assert.ok(await phone.locator('#doc-list').isHidden(), 'the list steps aside for the editor');
  assert.ok(await overflow() <= 0, 'no horizontal scrolling in the editor');
  await shot(phone, 'phone-editor');
  await phone.click('#back-to-list');
  await phone.locator('#doc-list').waitFor();
  await phone.context().close();
});

test('the keyboard reaches the editor controls with visible focus', async () => {
  await alice.goto(`${BASE}/#doc=${docId}`);
  await alice.locator('#title-input').waitFor();
  await alice.focus('#search-input');
  const reached = new Set();
  for (let i = 0; i < 40 && !reached.has('body-input'); i++) {
    await alice.keyboard.press('Tab');
    const focused = await alice.evaluate(() => {
      const el = document.activeElement;
      const style = getComputedStyle(el);
      return { id: el.id, outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0 };
    });
    if (focused.id) reached.add(focused.id);
    if (['sign-out', 'new-doc', 'share'].includes(focused.id)) {
      assert.ok(focused.outline, `${focused.id} shows focus`);
    }
  }
  for (const id of ['sign-out', 'new-doc', 'title-input', 'body-input']) assert.ok(reached.has(id), `Tab reaches #${id}`);
});

test('after a dropped connection the page reconnects and catches up with sinceVersion', async () => {
  const page = await browser.page('bob-reconnect');
  let outage = false;
  const sockets = [];
  await page.routeWebSocket(/\/ws\?/, (ws) => {
    if (outage) {
      ws.close({ code: 1011, reason: 'outage' });
      return;
    }
    ws.connectToServer();
    sockets.push(ws);
  });
  await signIn(page, 'bob');
  await page.goto(`${BASE}/#doc=${docId}`);
  await page.locator('#title-input').waitFor();
  await page.locator('#connection[data-state="live"]').waitFor();
  await page.waitForTimeout(300);

  outage = true;
  for (const ws of sockets) await ws.close({ code: 1012, reason: 'restart' });
  await page.locator('#connection[data-state="reconnecting"]').waitFor();
  const current = await serverDoc();
  const edited = `${current.body}\nWritten while bob was offline.`;
  assert.equal((await rest('alice', 'PUT', `/documents/${docId}`, { body: { title: current.title, body: edited }, ifMatch: current.version })).status, 200);
  await page.waitForTimeout(1200);
  assert.doesNotMatch(await body(page).inputValue(), /while bob was offline/, 'nothing arrives during the outage');
  outage = false;
  await page.locator('#connection[data-state="live"]').waitFor({ timeout: 20_000 });
  await eventually(async () => (await body(page).inputValue()).includes('while bob was offline'), { what: 'the missed change after reconnecting' });
  await page.locator('#doc-meta', { hasText: `Version ${current.version + 1} · changed by alice` }).waitFor();
  await page.context().close();
});

test('changes to sharing and deletion reach an open editor live', async () => {
  const page = await browser.page('bob-sharing');
  await signIn(page, 'bob');
  const created = await rest('alice', 'POST', '/documents', {
    body: { title: 'Shared notes', body: 'For bob.', collaborators: { bob: 'editor' } },
  });
  assert.equal(created.status, 201);
  const id = created.body.id;
  await page.goto(`${BASE}/#doc=${id}`);
  await eventually(async () => (await page.inputValue('#title-input')) === 'Shared notes', { what: 'the shared document' });
  await page.locator('#connection[data-state="live"]').waitFor();
  assert.equal(await body(page).getAttribute('readonly'), null, 'an editor can type');

  const patch = (version, collaborators) => fetch(`${BASE}/documents/${id}`, {
    method: 'PATCH',
    headers: { Authorization: `Bearer ${TOKENS.alice}`, 'Content-Type': 'application/merge-patch+json', 'If-Match': `"${version}"` },
    body: JSON.stringify({ collaborators }),
  });
  await page.locator('#analysis-body', { hasText: 'Analysed version 1' }).waitFor({ timeout: 15_000 });
  assert.equal((await patch(1, { bob: 'viewer' })).status, 200);
  await page.locator('#readonly-badge:not([hidden])').waitFor();
  assert.equal(await body(page).getAttribute('readonly'), '', 'demoted to viewer: read only at once');
  await page.locator('#history-list .history-item[data-version="2"]').waitFor();
  await page.locator('#doc-meta', { hasText: 'you are a viewer' }).waitFor();
  // A sharing change leaves the body, so its analysis, as it was: nothing to wait for.
  assert.doesNotMatch(await page.locator('#analysis-body').textContent(), /being analysed/);

  assert.equal((await patch(2, { bob: null })).status, 200);
  await page.locator('#doc-banner', { hasText: 'access to this document was removed' }).waitFor();
  await page.locator(`#doc-list button[data-id="${id}"]`).waitFor({ state: 'detached' });
  const meta = await page.locator('#doc-meta').textContent();
  assert.doesNotMatch(meta, /you are an? (editor|viewer)/, 'a revoked page names no role');
  assert.match(meta, /no longer have access/);

  const other = await rest('alice', 'POST', '/documents', {
    body: { title: 'Short-lived', body: '', collaborators: { bob: 'viewer' } },
  });
  await page.goto(`${BASE}/#doc=${other.body.id}`);
  await eventually(async () => (await page.inputValue('#title-input')) === 'Short-lived', { what: 'the second document' });
  await page.locator('#history-list .history-item[data-version="1"]').waitFor();
  assert.equal((await rest('alice', 'DELETE', `/documents/${other.body.id}`)).status, 204);
  await page.locator('#doc-banner', { hasText: 'alice deleted this document' }).waitFor();
  await page.locator('#doc-banner').getByRole('button', { name: 'Close document' }).click();
  await page.locator('#empty-editor:not([hidden])').waitFor();
  await page.context().close();
});

test('a token near expiry asks for a new one, which replaces it in place', async () => {
  assert.ok(ALICE_SHORT_TOKEN);
  const page = await browser.page('alice-renew');
  const frames = { sent: [], received: [] };
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => frames.sent.push(String(f.payload)));
    ws.on('framereceived', (f) => frames.received.push(String(f.payload)));
  });
  await page.goto(`${BASE}/#token=${ALICE_SHORT_TOKEN}`);
  await page.locator('#connection[data-state="live"]').waitFor();
  const banner = page.locator('#renew-banner');
  await banner.waitFor();
  assert.match(await banner.textContent(), /docfan token alice/);
  await banner.getByRole('button', { name: 'Paste a new token' }).click();
  await page.locator('#token-dialog').waitFor({ state: 'visible' });
  await page.fill('#token-input', TOKENS.bob);
  await page.click('#token-form button[type=submit]');
  await page.locator('#token-error', { hasText: 'for bob' }).waitFor();
  await page.fill('#token-input', TOKENS.alice);
  await page.click('#token-form button[type=submit]');
  await page.locator('#token-dialog').waitFor({ state: 'hidden' });
  await banner.waitFor({ state: 'detached' });
  assert.equal(await page.evaluate(() => localStorage.getItem('docfan.token')), TOKENS.alice);
  // The open connection switches to the new token without reconnecting.
  assert.ok(frames.sent.some((f) => JSON.parse(f).action === 'auth' && JSON.parse(f).token === TOKENS.alice), 'auth frame sent');
  await eventually(() => frames.received.some((f) => JSON.parse(f).type === 'authenticated'), { what: 'the authenticated frame' });
  await page.context().close();
});

test('the document list is paginated, newest first', async () => {
  for (let i = 1; i <= 22; i++) {
    const created = await rest('dave', 'POST', '/documents', { body: { title: `Dave's note ${String(i).padStart(2, '0')}`, body: '' } });
    assert.equal(created.status, 201);
  }
  const page = await browser.page('dave');
  await signIn(page, 'dave');
  const titles = page.locator('#doc-list .doc-title');
  await page.locator('#docs-more:not([hidden])').waitFor();
  assert.equal(await titles.count(), 20);
  assert.equal(await titles.first().textContent(), "Dave's note 22");
  await page.click('#docs-more');
  await eventually(async () => (await titles.count()) === 22, { what: 'the second page' });
  assert.equal(await titles.last().textContent(), "Dave's note 01");
  assert.ok(await page.locator('#docs-more').isHidden());
  await page.context().close();
});

test('signing out forgets the token', async () => {
  await bob.click('#sign-out');
  await bob.locator('#signed-out:not([hidden])').waitFor();
  assert.equal(await bob.evaluate(() => localStorage.getItem('docfan.token')), null);
  await bob.reload();
  await bob.locator('#signed-out:not([hidden])').waitFor();
  // Pasting a token signs in again, in the same page.
  await bob.fill('#sign-in-token', TOKENS.bob);
  await bob.keyboard.press('Tab');
  await bob.keyboard.press('Enter');
  await bob.locator('#who-name', { hasText: 'bob' }).waitFor();
  await bob.locator(`#doc-list button[data-id="${docId}"]`).click();
  const { title } = await serverDoc();
  await eventually(async () => (await bob.inputValue('#title-input')) === title, { what: 'the document after signing in again' });
});

test('text typed as the sign-in expires is kept through a reload and saved after signing in again', async () => {
  const page = await browser.page('alice-draft', undefined, {
    // The edits and reads refused once the token has expired, and the socket with it.
    tolerate: [/status of 401/, /WebSocket connection to .* failed/],
  });
  const short = tokenExpiringIn('alice', 6);
  const expiresAt = Date.now() + 6000;
  await page.goto(`${BASE}/#token=${short}`);
  await page.locator('#who-name', { hasText: 'alice' }).waitFor();
  await page.goto(`${BASE}/#doc=${docId}`);
  await page.locator('#title-input').waitFor();
  await page.locator('#connection[data-state="live"]').waitFor();
  await page.waitForTimeout(Math.max(0, expiresAt - Date.now()) + 1500);
  await page.locator('#expired-banner').waitFor({ timeout: 20_000 });
  // Still on the document, still typing: kept on this device.
  await caretAfter(page, 'Notes');
  await page.keyboard.type(' (typed after the sign-in expired)', { delay: 10 });
  await page.locator('#sync-state[data-state="blocked"]').waitFor();
  await page.waitForTimeout(400);
  assert.doesNotMatch((await serverDoc()).body, /after the sign-in expired/, 'nothing was sent with the expired token');
  // Meanwhile bob edits the start of the document.
  const current = await serverDoc();
  assert.equal((await rest('bob', 'PUT', `/documents/${docId}`, {
    body: { title: current.title, body: `Read this first.\n${current.body}` },
    ifMatch: current.version,
  })).status, 200);

  await page.reload();
  await page.locator('#signed-out:not([hidden])').waitFor();
  assert.match(await page.locator('#signed-out-reason').textContent(), /expired/);
  await page.fill('#sign-in-token', TOKENS.alice);
  await page.click('#sign-in-form button[type=submit]');
  await page.locator('#who-name', { hasText: 'alice' }).waitFor();
  await page.locator('#title-input').waitFor();
  const saved = await eventually(async () => {
    const doc = await serverDoc();
    return doc.body.includes('Notes (typed after the sign-in expired)') ? doc : null;
  }, { what: 'the draft on the server' });
  assert.ok(saved.body.startsWith('Read this first.\n'), "bob's edit is kept: the draft was transformed, not pasted over");
  await waitForSaved(page);
  assert.equal(await body(page).inputValue(), saved.body);
  await eventually(() => page.evaluate(() => !Object.keys(localStorage).some((k) => k.startsWith('docfan.draft'))), { what: 'no draft left' });
  await page.context().close();
});

test('no console errors or warnings on any page', () => {
  if (browser.tolerated.length) {
    console.log(`tolerated network log lines (expected statuses): ${browser.tolerated.length}`);
  }
  assert.deepEqual(browser.summary(), []);
});
