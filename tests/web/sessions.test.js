// The history panel's typing sessions (api/web/sessions.js), run directly in node.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupSessions, SESSION_GAP_MS } from '../../api/web/sessions.js';

const t0 = Date.parse('2026-12-01T10:00:00Z');
function entry(version, actor, seconds, action = 'updated', changedFields = ['body']) {
  return { version, actor, action, changedFields, at: new Date(t0 + seconds * 1000).toISOString() };
}

test('one person typing with short pauses is one session', () => {
  const entries = [entry(1, 'ann', 0, 'created', ['title', 'body', 'collaborators'])];
  for (let v = 2; v <= 40; v++) entries.push(entry(v, 'ann', v * 3));
  const sessions = groupSessions(entries);
  assert.equal(sessions.length, 2);
  assert.equal(sessions[0].typing, false);
  assert.deepEqual([sessions[1].first, sessions[1].last, sessions[1].entries.length], [2, 40, 39]);
  assert.equal(sessions[1].from, entries[1].at);
  assert.equal(sessions[1].to, entries[39].at);
});

test('another person, a pause, or a change other than the body starts a new session', () => {
  const gap = SESSION_GAP_MS / 1000;
  const sessions = groupSessions([
    entry(2, 'ann', 0),
    entry(3, 'ann', 5),
    entry(4, 'bob', 6),
    entry(5, 'ann', 7),
    entry(6, 'ann', 7 + gap + 1),
    entry(7, 'ann', 8 + gap, 'updated', ['title']),
    entry(8, 'ann', 9 + gap),
    entry(9, 'ann', 9 + gap, 'updated', ['body', 'title']),
    entry(10, 'ann', 10 + gap, 'deleted', []),
  ]);
  assert.deepEqual(
    sessions.map((s) => [s.actor, s.first, s.last, s.typing]),
    [['ann', 2, 3, true], ['bob', 4, 4, true], ['ann', 5, 5, true], ['ann', 6, 6, true],
      ['ann', 7, 7, false], ['ann', 8, 8, true], ['ann', 9, 9, false], ['ann', 10, 10, false]],
  );
});

test('every entry lands in exactly one session, in order', () => {
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const entries = [];
  let seconds = 0;
  for (let v = 1; v <= 500; v++) {
    seconds += next() < 0.05 ? 600 : next() * 10;
    const actor = next() < 0.1 ? 'bob' : 'ann';
    entries.push(entry(v, actor, seconds, 'updated', next() < 0.05 ? ['title'] : ['body']));
  }
  const sessions = groupSessions(entries);
  assert.deepEqual(sessions.flatMap((s) => s.entries.map((e) => e.version)), entries.map((e) => e.version));
  for (const s of sessions) {
    assert.ok(s.entries.every((e) => e.actor === s.actor));
    assert.equal(s.first, s.entries[0].version);
    assert.equal(s.last, s.entries.at(-1).version);
  }
});

test('unreadable times never join a session, and nothing is required', () => {
  const sessions = groupSessions([
    { version: 2, actor: 'ann', action: 'updated', changedFields: ['body'], at: 'soon' },
    { version: 3, actor: 'ann', action: 'updated', changedFields: ['body'], at: 'soon' },
    { version: 4, actor: 'ann', action: 'updated' },
  ]);
  assert.equal(sessions.length, 3);
  assert.deepEqual(groupSessions([]), []);
});
