// The editor's three-way merge (api/web/merge.js), run directly in node: it is plain
// JavaScript with no DOM.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeText, diffLines } from '../../api/web/merge.js';

const base = 'Goals\nShip the editor.\nInvite the team.\n\nRisks\nNone yet.';

test('changes to different lines combine cleanly', () => {
  const mine = base.replace('Goals', 'Goals (draft)');
  const theirs = base.replace('None yet.', 'The deadline is tight.');
  assert.deepEqual(mergeText(base, mine, theirs), {
    text: 'Goals (draft)\nShip the editor.\nInvite the team.\n\nRisks\nThe deadline is tight.',
    conflicted: false,
  });
});

test('one side unchanged takes the other', () => {
  assert.equal(mergeText(base, base, 'x').text, 'x');
  assert.equal(mergeText(base, 'y', base).text, 'y');
  assert.equal(mergeText(base, 'z', 'z').text, 'z');
});

test('the same lines changed differently are kept between markers', () => {
  const merged = mergeText('a\nb\nc', 'a\nmine\nc', 'a\ntheirs\nc', 'theirs (version 4 by bob)');
  assert.equal(merged.conflicted, true);
  assert.equal(merged.text, 'a\n<<<<<<< mine\nmine\n=======\ntheirs\n>>>>>>> theirs (version 4 by bob)\nc');
});

test('identical changes on both sides are not a conflict', () => {
  assert.deepEqual(mergeText('a\nb\nc', 'a\nB\nc\nmine', 'a\nB\nc'), { text: 'a\nB\nc\nmine', conflicted: false });
});

test('insertions at both ends and deletions combine', () => {
  assert.equal(mergeText('a\nb\nc', 'a\nb\nc\nd', 'z\na\nb\nc').text, 'z\na\nb\nc\nd');
  assert.equal(mergeText('a\nb\nc\nd\ne', 'a\nc\nd\ne', 'a\nb\nc\nd\nE').text, 'a\nc\nd\nE');
});

test('the line diff names the replaced base lines', () => {
  assert.deepEqual(diffLines(['a', 'b', 'c'], ['a', 'x', 'c', 'd']), [
    { start: 1, end: 2, lines: ['x'] },
    { start: 3, end: 3, lines: ['d'] },
  ]);
  assert.deepEqual(diffLines(['a'], ['a']), []);
});

test('very long texts still merge (changed middle as one block)', () => {
  const long = Array.from({ length: 3000 }, (_, i) => `line ${i}`);
  const mine = [...long];
  mine[10] = 'mine';
  const theirs = [...long];
  theirs[2990] = 'theirs';
  const merged = mergeText(long.join('\n'), mine.join('\n'), theirs.join('\n'));
  assert.equal(merged.conflicted, false);
  assert.match(merged.text, /mine[\s\S]*theirs/);
});
