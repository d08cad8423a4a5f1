// The co-editing client of one document: at most one edit in flight, local typing
// buffered behind it (ot.js's synchronized / awaitingConfirm / awaitingWithBuffer), and
// every version the server announces applied in order, transformed past what is still
// ours. The server orders concurrent edits; this only has to agree with it.
//
// Versions arrive from two places: the answer to our POST /edits (our own version) and
// `document.updated` frames (everyone's, ours included). Both go through one queue keyed
// by version, so each version is applied once, in order, whichever comes first. A frame
// by our own user that arrives while an edit is in flight may be that edit: the queue
// waits for the answer, which names our version, before deciding.
//
// No DOM here: the editor listens for events and tells the textarea; node tests drive it
// against a simulated server.

import { apply, compose, transform, isNoop, normalize } from './operation.js';

/** Local typing waits this long for more before it is sent… */
export const SEND_DELAY_MS = 150;
/** …but never longer than this while someone keeps typing. */
export const MAX_SEND_DELAY_MS = 500;
/** A missing version this long means a gap: ask for a replay, then for the document. */
const GAP_MS = 1500;
const RETRY_MS = [500, 1000, 2000, 5000, 10000];

/**
 * Events (CustomEvent, `detail` in brackets):
 * - `remote` [{ops, version, actor, frame}]: apply `ops` to the local text (transformed
 *   past our pending edits already).
 * - `reset` [{text}]: the local text was replaced (after a refetch).
 * - `state`: pending edits, version or sending status changed.
 * - `gap`: a version is missing; replay from `version` (resubscribe) or refetch.
 * - `failed` [{error, ops, base}]: the server refused an edit for good (4xx).
 * - `blocked` [{error}]: the server wants a new sign-in (401); `resume()` after it.
 */
export class CollabClient extends EventTarget {
  /**
   * @param {object} options
   * @param {number} options.version the version `text` is
   * @param {string} options.text the body at that version
   * @param {string} options.user who is typing (frames by them may be our own edits)
   * @param {(base: number, ops: Array) => Promise<{version: number, baseVersion: number, ops: Array}>} options.send
   */
  constructor({ version, text, user, send, delay = SEND_DELAY_MS, maxDelay = MAX_SEND_DELAY_MS, gapDelay = GAP_MS, timers = globalThis }) {
    super();
    this.version = version;
    this.serverText = text;
    this.text = text;
    this.user = user;
    this.send = send;
    this.delay = delay;
    this.maxDelay = maxDelay;
    /** When the oldest unsent keystroke was typed. */
    this.bufferedAt = null;
    this.gapDelay = gapDelay;
    this.timers = timers;
    /** The edit awaiting its answer: {ops, base, detached}. A detached edit is not in `text`. */
    this.inflight = null;
    /** Local edits after the in-flight one, on top of `version` (+ inflight). */
    this.buffer = null;
    /** Edits to send detached, each on its own base (restored drafts): [{base, ops}]. */
    this.queue = [];
    /** version → {baseVersion, ops, actor, source, frame} not applied yet. */
    this.waiting = new Map();
    this.ackVersion = null;
    this.blocked = false;
    this.sendTimer = null;
    this.gapTimer = null;
    this.gapCount = 0;
    this.retries = 0;
    this.closed = false;
  }

  /** synchronized, awaitingConfirm or awaitingWithBuffer (plus queued drafts). */
  get state() {
    if (!this.inflight) return this.buffer || this.queue.length ? 'buffered' : 'synchronized';
    return this.buffer ? 'awaitingWithBuffer' : 'awaitingConfirm';
  }

  /** True while something typed here is not committed yet. */
  hasPending() {
    return Boolean(this.inflight || this.buffer || this.queue.length);
  }

  /**
   * What is not committed, as edits each on its own base: a draft that survives a reload.
   * @returns {Array<{base: number, ops: Array}>}
   */
  pending() {
    const pieces = this.queue.map((p) => ({ base: p.base, ops: p.ops }));
    if (this.inflight?.detached) pieces.unshift({ base: this.inflight.base, ops: this.inflight.ops });
    let mine = this.inflight && !this.inflight.detached ? this.inflight.ops : null;
    if (this.buffer) mine = mine ? compose(mine, this.buffer) : this.buffer;
    if (mine && !isNoop(mine)) pieces.push({ base: this.version, ops: normalize(mine) });
    return pieces;
  }

  close() {
    this.closed = true;
    this.timers.clearTimeout(this.sendTimer);
    this.timers.clearTimeout(this.gapTimer);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // Local edits.

  /** The person changed the text by `ops` (relative to `this.text`). */
  local(ops) {
    if (isNoop(ops)) return;
    this.text = apply(this.text, ops);
    this.buffer = this.buffer ? compose(this.buffer, ops) : normalize(ops);
    this.bufferedAt ??= Date.now();
    this.timers.clearTimeout(this.sendTimer);
    const wait = Math.max(0, Math.min(this.delay, this.bufferedAt + this.maxDelay - Date.now()));
    this.sendTimer = this.timers.setTimeout(() => this.flush(), wait);
    this.emit('state');
  }

  /** Sends what is buffered now (Ctrl-S, closing, the timer). */
  flush() {
    this.timers.clearTimeout(this.sendTimer);
    this.sendTimer = null;
    if (this.closed || this.blocked || this.inflight) return;
    if (this.queue.length) {
      const { base, ops } = this.queue.shift();
      this.inflight = { base, ops, detached: true };
    } else if (this.buffer) {
      const ops = this.buffer;
      this.buffer = null;
      this.bufferedAt = null;
      if (isNoop(ops)) return;
      this.inflight = { base: this.version, ops, detached: false };
    } else {
      return;
    }
    this.post(this.inflight);
    this.emit('state');
  }

  /** Sends `ops` made on version `base` as they are; the server transforms them. */
  submitDetached(base, ops) {
    if (isNoop(ops)) return;
    this.queue.push({ base, ops: normalize(ops) });
    this.flush();
    this.emit('state');
  }

  /** The sign-in ended (known here before the server says so): nothing is sent until `resume()`. */
  block() {
    if (this.blocked) return;
    this.blocked = true;
    this.emit('state');
  }

  /** After a new sign-in: sends again what waited. */
  resume() {
    if (!this.blocked) return;
    this.blocked = false;
    this.timers.clearTimeout(this.retryTimer);
    if (this.inflight && !this.inflight.posting) this.post(this.inflight);
    else this.flush();
    this.emit('state');
  }

  async post(inflight) {
    let answer;
    inflight.posting = true;
    try {
      answer = await this.send(inflight.base, normalize(inflight.ops));
    } catch (error) {
      inflight.posting = false;
      if (this.closed || this.inflight !== inflight) return;
      const status = error?.status ?? 0;
      if (status === 401) {
        this.blocked = true;
        this.emit('blocked', { error });
      } else if (status === 0 || status === 429 || status >= 500) {
        // Not refused, not known to be committed: the same edit again, later.
        const wait = RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)];
        this.retries += 1;
        this.retryTimer = this.timers.setTimeout(() => {
          if (!this.closed && this.inflight === inflight && !this.blocked) this.post(inflight);
        }, wait);
      } else {
        // Refused for good: the local text goes back to the server's, and the editor
        // decides what to tell the person (the refused text is in the event).
        this.inflight = null;
        const text = this.text;
        if (!inflight.detached) {
          this.buffer = null;
          this.bufferedAt = null;
          this.text = this.serverText;
          this.emit('reset', { text: this.text });
        }
        this.emit('failed', { error, ops: inflight.ops, base: inflight.base, detached: inflight.detached, text });
        this.ackVersion = null;
        this.drain(); // frames held back in case they were this edit can go now
      }
      this.emit('state');
      return;
    }
    inflight.posting = false;
    if (this.closed || this.inflight !== inflight) return;
    this.retries = 0;
    if (answer.version <= this.version) {
      // Already in the text read after a gap (a detached edit committed meanwhile).
      this.inflight = null;
      this.drain();
      return;
    }
    this.ackVersion = answer.version;
    this.receive({ version: answer.version, baseVersion: answer.baseVersion, ops: answer.ops, source: 'answer' });
  }

  // Versions from the server.

  /** A `document.updated` frame of this document. */
  frame(frame) {
    const bodyChanged = Array.isArray(frame.changedFields) ? frame.changedFields.includes('body') : Array.isArray(frame.ops);
    if (bodyChanged && !Array.isArray(frame.ops)) {
      // A body change without its operation cannot be applied: the document is needed.
      if (frame.version > this.version) this.emit('gap', { refetch: true, reason: 'no-ops' });
      return;
    }
    this.receive({
      version: frame.version,
      baseVersion: frame.baseVersion ?? frame.version - 1,
      ops: Array.isArray(frame.ops) ? frame.ops : [],
      actor: frame.actor,
      source: 'frame',
      frame,
    });
  }

  receive(entry) {
    if (this.closed || !(entry.version > this.version)) return;
    if (!this.waiting.has(entry.version) || entry.source === 'answer') this.waiting.set(entry.version, entry);
    this.drain();
  }

  drain() {
    for (;;) {
      const next = this.version + 1;
      const entry = this.waiting.get(next);
      if (!entry) break;
      if (entry.baseVersion !== this.version) {
        this.waiting.delete(next);
        this.emit('gap', { refetch: true, reason: 'mismatch' });
        break;
      }
      const ours = this.inflight !== null && this.ackVersion === next;
      if (!ours && this.inflight && this.ackVersion === null && entry.source === 'frame' && entry.actor === this.user) {
        break; // perhaps our own edit: its answer will tell
      }
      this.waiting.delete(next);
      if (ours) this.confirm(entry);
      else this.remote(entry);
    }
    for (const version of this.waiting.keys()) if (version <= this.version) this.waiting.delete(version);
    this.watchGap();
    // What was typed meanwhile goes now: the debounce is for keystrokes, not for answers.
    if (!this.inflight && (this.buffer || this.queue.length)) this.flush();
    this.emit('state');
  }

  confirm(entry) {
    const { detached } = this.inflight;
    this.inflight = null;
    this.ackVersion = null;
    this.serverText = apply(this.serverText, entry.ops);
    this.version = entry.version;
    // A detached edit is not in the local text yet: it arrives like anyone else's.
    if (detached) this.remote(entry, true);
  }

  remote(entry, applied = false) {
    let ops = entry.ops;
    if (!applied) this.serverText = apply(this.serverText, ops);
    this.version = entry.version;
    if (isNoop(ops)) {
      this.emit('remote', { ops: [], version: entry.version, actor: entry.actor, frame: entry.frame });
      return;
    }
    if (this.inflight && !this.inflight.detached) {
      const [theirs, mine] = transform(ops, this.inflight.ops);
      ops = theirs;
      this.inflight.ops = mine;
    }
    if (this.buffer) {
      const [theirs, mine] = transform(ops, this.buffer);
      ops = theirs;
      this.buffer = mine;
    }
    this.text = apply(this.text, ops);
    this.emit('remote', { ops, version: entry.version, actor: entry.actor ?? this.user, frame: entry.frame });
  }

  watchGap() {
    if (!this.waiting.size) {
      this.timers.clearTimeout(this.gapTimer);
      this.gapTimer = null;
      this.gapCount = 0;
      return;
    }
    if (this.gapTimer) return;
    this.gapTimer = this.timers.setTimeout(() => {
      this.gapTimer = null;
      if (!this.waiting.size || this.closed) return;
      // Waiting on our own answer is not a gap.
      if (this.inflight && this.ackVersion === null) {
        this.watchGap();
        return;
      }
      this.gapCount += 1;
      this.emit('gap', { refetch: this.gapCount > 1, reason: 'missing' });
      this.watchGap();
    }, this.gapDelay);
  }

  /**
   * The document as the server has it now (after a gap that replay could not fill).
   * Edits not committed yet are sent again, detached, for the server to transform; the
   * local text shows the server's until they come back.
   * @returns {boolean} false while an edit is in flight (try again after its answer)
   */
  reset(version, text) {
    if (this.inflight && !this.inflight.detached) return false;
    if (version < this.version) return true;
    const pieces = this.buffer && !isNoop(this.buffer) ? [{ base: this.version, ops: this.buffer }] : [];
    this.buffer = null;
    this.bufferedAt = null;
    this.version = version;
    this.serverText = text;
    this.text = text;
    this.ackVersion = this.inflight ? this.ackVersion : null;
    for (const v of this.waiting.keys()) if (v <= version) this.waiting.delete(v);
    this.queue.push(...pieces);
    this.emit('reset', { text });
    this.drain();
    return true;
  }
}
