// The editor's text operations (api/web/operation.js) and its co-editing client
// (api/web/collab.js), run directly in node: laws of apply/compose/transform on random
// operations, code points (emoji are one character), and a simulated server with the
// contract's tie rule that several clients type against, with frames and answers
// delivered in random orders, until everyone holds the server's text.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  apply, compose, transform, diff, transformPosition, normalize, cpLength, baseLength, targetLength, check, utf16Index, cpIndex,
} from '../../api/web/operation.js';
import { CollabClient } from '../../api/web/collab.js';

// A small seeded generator, so a failure can be replayed.
function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

const ALPHABET = ['a', 'b', 'c', ' ', '\n', 'é', '中', '😀', '👍🏽', '𝄞'];

function randomText(random, max = 12) {
  let text = '';
  const n = Math.floor(random() * max);
  for (let i = 0; i < n; i++) text += ALPHABET[Math.floor(random() * ALPHABET.length)];
  return text;
}

/** A random operation that fits `text`, sometimes leaving the tail implicit. */
function randomOp(random, text) {
  const length = cpLength(text);
  const ops = [];
  let at = 0;
  while (at < length) {
    const left = length - at;
    const n = 1 + Math.floor(random() * Math.min(left, 4));
    const pick = random();
    if (pick < 0.45) ops.push(n);
    else if (pick < 0.7) ops.push(-n);
    else {
      ops.push(randomText(random, 4) || 'x');
      continue;
    }
    at += n;
  }
  if (random() < 0.3) ops.push(randomText(random, 3) || 'y');
  const normal = normalize(ops);
  return random() < 0.5 ? normal : [...normal, ...(at === length && random() < 0.5 ? [] : [])];
}

test('apply keeps, inserts and deletes code points; the tail is kept', () => {
  assert.equal(apply('hello world', [6, -5, 'there']), 'hello there');
  assert.equal(apply('hello', ['¡']), '¡hello');
  assert.equal(apply('abc', [1, -1]), 'ac');
  assert.equal(apply('', ['x']), 'x');
  // One emoji is one character: retain 1 keeps the whole of it.
  assert.equal(apply('😀b', [1, 'a']), '😀ab');
  assert.equal(apply('a👍🏽b', [1, -2, 'c']), 'acb', 'a skin-toned thumb is two code points');
  assert.equal(apply('𝄞x', [-1]), 'x');
  assert.throws(() => apply('ab', [3]), RangeError);
  assert.throws(() => apply('ab', [1, -2]), RangeError);
});

test('code point offsets and UTF-16 indices convert both ways', () => {
  const text = 'a😀b👍🏽c';
  assert.equal(cpLength(text), 6);
  assert.equal(text.length, 9);
  assert.equal(utf16Index(text, 2), 3);
  assert.equal(cpIndex(text, 3), 2);
  assert.equal(utf16Index(text, 99), text.length);
  for (let i = 0; i <= cpLength(text); i++) assert.equal(cpIndex(text, utf16Index(text, i)), i);
});

test('check accepts the wire format and nothing else', () => {
  assert.doesNotThrow(() => check([1, 'a', -2]));
  for (const bad of [[0], [''], [null], [1.5], [{}], 'abc', [true]]) assert.throws(() => check(bad));
});

test('normalize merges neighbours, puts inserts before deletes and drops the tail retain', () => {
  assert.deepEqual(normalize([1, 2, 'a', 'b', -1, -2, 3]), [3, 'ab', -3]);
  assert.deepEqual(normalize([-1, 'a']), ['a', -1]);
  assert.deepEqual(normalize([5]), []);
});

test('diff turns one text into the other, never splitting an emoji', () => {
  const random = rng(7);
  for (let i = 0; i < 2000; i++) {
    const a = randomText(random);
    const b = random() < 0.5 ? randomText(random) : apply(a, randomOp(random, a));
    const ops = diff(a, b);
    assert.equal(apply(a, ops), b, `${JSON.stringify(a)} → ${JSON.stringify(b)}`);
    for (const c of ops) if (typeof c === 'string') assert.ok(!/^[\udc00-\udfff]|[\ud800-\udbff]$/.test(c), 'no half emoji');
  }
  // Two emoji that share their high surrogate.
  assert.deepEqual(diff('😀', '😁'), ['😁', -1]);
  assert.deepEqual(diff('a😀', 'a😀😀'), [2, '😀']);
  // The caret settles which "a" was typed.
  assert.deepEqual(diff('aa', 'aaa', 1), ['a']);
  assert.deepEqual(diff('aa', 'aaa'), [2, 'a']);
  assert.deepEqual(diff('same', 'same'), []);
});

test('compose(a, b) applies like a then b', () => {
  const random = rng(11);
  for (let i = 0; i < 3000; i++) {
    const text = randomText(random);
    const a = randomOp(random, text);
    const middle = apply(text, a);
    const b = randomOp(random, middle);
    assert.equal(apply(text, compose(a, b)), apply(middle, b), JSON.stringify({ text, a, b }));
  }
});

test('compose is associative', () => {
  const random = rng(13);
  for (let i = 0; i < 1000; i++) {
    const t0 = randomText(random);
    const a = randomOp(random, t0);
    const t1 = apply(t0, a);
    const b = randomOp(random, t1);
    const c = randomOp(random, apply(t1, b));
    assert.equal(apply(t0, compose(compose(a, b), c)), apply(t0, compose(a, compose(b, c))));
  }
});

test('transform converges (TP1) and its lengths line up', () => {
  const random = rng(17);
  for (let i = 0; i < 4000; i++) {
    const text = randomText(random);
    const a = randomOp(random, text);
    const b = randomOp(random, text);
    const [a1, b1] = transform(a, b);
    const left = apply(apply(text, a), b1);
    const right = apply(apply(text, b), a1);
    assert.equal(left, right, JSON.stringify({ text, a, b, a1, b1 }));
    assert.ok(baseLength(b1) <= cpLength(apply(text, a)));
    assert.ok(targetLength(a1) <= cpLength(right));
  }
});

test('at one position the insert committed first goes first', () => {
  const [a1, b1] = transform([2, 'X'], [2, 'Y']);
  assert.equal(apply(apply('abcd', [2, 'X']), b1), 'abXYcd');
  assert.equal(apply(apply('abcd', [2, 'Y']), a1), 'abXYcd');
  // An insert inside a range the other deletes survives.
  const [d1, i1] = transform([1, -2], [2, '😀']);
  assert.equal(apply(apply('abcd', [1, -2]), i1), 'a😀d');
  assert.equal(apply(apply('abcd', [2, '😀']), d1), 'a😀d');
});

test('transform against a no-op and composition with a no-op change nothing', () => {
  const random = rng(19);
  for (let i = 0; i < 500; i++) {
    const text = randomText(random);
    const a = randomOp(random, text);
    assert.equal(apply(text, transform(a, [])[0]), apply(text, a));
    assert.equal(apply(text, transform([], a)[1]), apply(text, a));
    assert.equal(apply(text, compose(a, [])), apply(text, a));
    assert.equal(apply(text, compose([], a)), apply(text, a));
  }
});

test('carets follow inserts and deletes, in code points', () => {
  assert.equal(transformPosition(3, [1, 'ab']), 5);
  assert.equal(transformPosition(1, [1, 'ab']), 3, 'an insert at the caret pushes it');
  assert.equal(transformPosition(1, [1, 'ab'], true), 1, 'unless it sticks before');
  assert.equal(transformPosition(0, [5, 'x']), 0);
  assert.equal(transformPosition(4, [1, -2]), 2);
  assert.equal(transformPosition(2, [1, -3]), 1, 'inside a deletion: to its start');
  assert.equal(transformPosition(2, ['😀']), 3);
  const random = rng(23);
  for (let i = 0; i < 1000; i++) {
    const text = randomText(random);
    const op = randomOp(random, text);
    const pos = Math.floor(random() * (cpLength(text) + 1));
    const moved = transformPosition(pos, op);
    assert.ok(moved >= 0 && moved <= cpLength(apply(text, op)));
  }
});

// The simulated server: the contract's edits endpoint in a few lines.
class Server {
  constructor(text) {
    this.text = text;
    this.ops = [];
    this.clients = [];
  }

  get version() {
    return this.ops.length + 1;
  }

  edit(user, base, ops) {
    check(ops);
    let op = ops;
    for (const committed of this.ops.slice(base - 1)) op = transform(committed, op)[1];
    this.text = apply(this.text, op);
    this.ops.push(op);
    const frame = { type: 'document.updated', version: this.version, baseVersion: this.version - 1, ops: op, actor: user, changedFields: ['body'] };
    for (const client of this.clients) client.frames.push(JSON.parse(JSON.stringify(frame)));
    return { version: this.version, baseVersion: this.version - 1, ops: op };
  }
}

class FakeTimers {
  constructor() {
    this.next = 1;
    this.pending = new Map();
  }

  setTimeout(fn) {
    const id = this.next++;
    this.pending.set(id, fn);
    return id;
  }

  clearTimeout(id) {
    this.pending.delete(id);
  }

  fireAll() {
    const fns = [...this.pending.values()];
    this.pending.clear();
    for (const fn of fns) fn();
    return fns.length;
  }
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

function simulate(seed, users, { gaps = false } = {}) {
  return async () => {
    const random = rng(seed);
    const server = new Server('Shared 😀 text\n');
    const requests = [];
    const mismatches = [];
    const peers = users.map((user) => {
      const timers = new FakeTimers();
      const peer = { user, frames: [], answers: [], timers };
      peer.client = new CollabClient({
        version: 1,
        text: server.text,
        user,
        timers,
        send: (base, ops) => new Promise((resolve) => requests.push({ peer, base, ops, resolve })),
      });
      peer.client.addEventListener('gap', (event) => {
        if (event.detail.reason !== 'missing') mismatches.push(event.detail);
      });
      server.clients.push(peer);
      return peer;
    });
    const step = async (typing) => {
      const peer = peers[Math.floor(random() * peers.length)];
      const pick = random();
      if (typing && pick < 0.35) {
        peer.client.local(randomOp(random, peer.client.text));
      } else if (gaps && pick < 0.38) {
        // Frames lost: the document is read again (refused while an edit is in flight).
        if (peer.client.reset(server.version, server.text)) peer.frames.length = 0;
      } else if (pick < 0.5) {
        peer.timers.fireAll();
      } else if (pick < 0.7 && requests.length) {
        const [request] = requests.splice(Math.floor(random() * requests.length), 1);
        request.peer.answers.push({ resolve: request.resolve, answer: server.edit(request.peer.user, request.base, request.ops) });
      } else if (pick < 0.85 && peer.answers.length) {
        const { resolve, answer } = peer.answers.shift();
        resolve(JSON.parse(JSON.stringify(answer)));
      } else if (peer.frames.length) {
        peer.client.frame(peer.frames.shift());
      }
      await settle();
    };
    for (let i = 0; i < 300; i++) await step(true);
    for (let i = 0; i < 10000; i++) {
      const quiet = !requests.length && peers.every((p) => !p.frames.length && !p.answers.length && !p.client.hasPending());
      if (quiet) break;
      await step(false);
    }
    assert.deepEqual(mismatches, [], 'every version fits the one before');
    assert.ok(server.version > 20, `only ${server.version} versions were committed`);
    for (const peer of peers) {
      assert.equal(peer.client.hasPending(), false, `${peer.user} has nothing left to send`);
      assert.equal(peer.client.version, server.version, `${peer.user} is at the server's version`);
      assert.equal(peer.client.text, server.text, `${peer.user} holds the server's text`);
    }
  };
}

for (const [seed, users] of [[1, ['ann', 'ben']], [2, ['ann', 'ben', 'cy']], [3, ['ann', 'ann']], [4, ['ann', 'ben', 'ann', 'dee', 'eve']], [5, ['ann', 'ben', 'cy']]]) {
  test(`clients ${users.join(', ')} typing at once converge on the server's text (seed ${seed})`, simulate(seed, users));
}

for (const [seed, users] of [[6, ['ann', 'ben']], [7, ['ann', 'ben', 'cy']], [8, ['ann', 'ann', 'ben']]]) {
  test(`clients ${users.join(', ')} converge when some lose frames and read the document again (seed ${seed})`, simulate(seed, users, { gaps: true }));
}

test('a draft made on an old version is sent detached and lands transformed', async () => {
  const server = new Server('one two');
  server.edit('ben', 1, [3, ' and']);
  const timers = new FakeTimers();
  const client = new CollabClient({
    version: 2,
    text: server.text,
    user: 'ann',
    timers,
    send: async (base, ops) => server.edit('ann', base, ops),
  });
  server.clients.push({ frames: [] });
  // Typed on version 1 ("one two"), before ben's edit: "one two three".
  client.submitDetached(1, [7, ' three']);
  await settle();
  assert.equal(client.text, 'one and two three');
  assert.equal(client.version, 3);
  assert.equal(client.hasPending(), false);
});

test('our own frame before the answer is not applied twice', async () => {
  const server = new Server('abc');
  const timers = new FakeTimers();
  let release;
  const client = new CollabClient({
    version: 1,
    text: 'abc',
    user: 'ann',
    timers,
    send: (base, ops) => new Promise((resolve) => { release = () => resolve(server.edit('ann', base, ops)); }),
  });
  const peer = { frames: [] };
  server.clients.push(peer);
  client.local([3, 'd']);
  client.flush();
  release();
  client.frame(peer.frames.shift()); // the frame overtakes the answer
  await settle();
  assert.equal(client.text, 'abcd');
  assert.equal(client.version, 2);
  assert.equal(client.state, 'synchronized');
});

test('a refused edit puts the server text back and reports what was refused', async () => {
  const timers = new FakeTimers();
  const client = new CollabClient({
    version: 1,
    text: 'abc',
    user: 'ann',
    timers,
    send: async () => { throw Object.assign(new Error('viewer'), { status: 403 }); },
  });
  const events = [];
  client.addEventListener('failed', (e) => events.push(e.detail));
  client.local(['x']);
  client.flush();
  await settle();
  assert.equal(client.text, 'abc');
  assert.equal(events[0].text, 'xabc');
  assert.equal(client.hasPending(), false);
});

test('an expired sign-in holds the edit until resume', async () => {
  const server = new Server('abc');
  server.clients.push({ frames: [] });
  const timers = new FakeTimers();
  let signedIn = false;
  const client = new CollabClient({
    version: 1,
    text: 'abc',
    user: 'ann',
    timers,
    send: async (base, ops) => {
      if (!signedIn) throw Object.assign(new Error('expired'), { status: 401 });
      return server.edit('ann', base, ops);
    },
  });
  client.local([3, '!']);
  client.flush();
  await settle();
  assert.equal(client.blocked, true);
  client.local([4, '?']);
  assert.deepEqual(client.pending(), [{ base: 1, ops: [3, '!?'] }]);
  signedIn = true;
  client.resume();
  await settle();
  await settle();
  assert.equal(server.text, 'abc!?');
  assert.equal(client.hasPending(), false);
});

test('after a gap the document read again takes the place of the local copy; typing is sent on, detached', async () => {
  const server = new Server('one');
  server.clients.push({ frames: [] });
  const timers = new FakeTimers();
  const client = new CollabClient({ version: 1, text: 'one', user: 'ann', timers, send: async (base, ops) => server.edit('ann', base, ops) });
  const shown = [];
  client.addEventListener('reset', (event) => shown.push(event.detail.text));
  client.local([3, ' two']); // typed, not sent yet
  // Meanwhile two versions the client never hears of.
  server.edit('ben', 1, ['zero ']);
  server.edit('ben', 2, [8, '!']);
  assert.equal(client.reset(server.version, server.text), true);
  assert.deepEqual(shown, ['zero one!']);
  await settle();
  assert.equal(server.text, 'zero one! two', 'transformed past both, committed inserts first');
  assert.equal(client.text, server.text);
  assert.equal(client.version, server.version);
  assert.equal(client.hasPending(), false);
});
