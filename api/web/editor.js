// The document editor: the body is co-edited live (operations through CollabClient,
// sent as people type, others' applied as they arrive, carets kept in place), the title
// is saved on its own with PATCH and If-Match, others' carets are shown, and what is not
// committed yet is kept as a draft in localStorage until it is.

import { $, el, clear, show, ago, debounce } from './dom.js';
import { ApiError } from './api.js';
import { CollabClient } from './collab.js';
import { diff, transformPosition, utf16Index, cpIndex, cpLength, apply } from './operation.js';
import { Presence } from './presence.js';
import { readDraft, writeDraft, dropDraft } from './drafts.js';
import { mergeText } from './merge.js';

/** Own caret sent at most this often (the server limits presence per connection). */
const PRESENCE_EVERY_MS = 150;
/** The title is saved once typing in it pauses this long. */
const TITLE_DELAY_MS = 700;
/** Closing or switching documents waits this long for edits in flight. */
const SETTLE_MS = 3000;

function accessOf(doc, user) {
  if (!doc) return null;
  if (doc.owner === user) return 'owner';
  return doc.collaborators?.[user] ?? null;
}

export class Editor extends EventTarget {
  constructor({ api, live, user, analysis, history }) {
    super();
    this.api = api;
    this.live = live;
    this.user = user;
    this.analysis = analysis;
    this.history = history;
    /** The document's metadata as last heard (title, owner, collaborators, version…). */
    this.doc = null;
    /** The body's co-editing client. */
    this.client = null;
    /** The version whose body is the latest: a sharing-only change has no new analysis. */
    this.bodyVersion = null;
    this.gone = false;
    this.titleDirty = false;
    this.titleSaving = false;
    this.loadToken = 0;

    this.section = $('editor');
    this.empty = $('empty-editor');
    this.title = $('title-input');
    this.body = $('body-input');
    this.status = $('editor-status');
    this.sync = $('sync-state');
    this.banner = $('doc-banner');
    this.presence = new Presence(this.body, $('body-overlay'), $('presence-list'));

    this.body.addEventListener('input', () => this.onBodyInput());
    this.title.addEventListener('input', () => {
      this.titleDirty = true;
      this.saveTitleSoon();
      this.updateSync();
    });
    this.title.addEventListener('blur', () => this.titleDirty && this.saveTitle());
    this.saveTitleSoon = debounce(() => this.saveTitle(), TITLE_DELAY_MS);
    this.persistSoon = debounce(() => this.persist(), 250);
    // Own caret: on every way it can move, at most every PRESENCE_EVERY_MS.
    for (const type of ['keyup', 'mouseup', 'select', 'focus']) this.body.addEventListener(type, () => this.sendCaretSoon());
    document.addEventListener('selectionchange', () => {
      if (document.activeElement === this.body) this.sendCaretSoon();
    });
    this.caretTimer = null;
    this.caretSentAt = 0;
  }

  get id() {
    return this.doc?.id ?? null;
  }

  get access() {
    return accessOf(this.doc, this.user);
  }

  canEdit() {
    return !this.gone && (this.access === 'owner' || this.access === 'editor');
  }

  /** True while something typed here is not committed yet. */
  isDirty() {
    return Boolean(this.doc) && (this.titleDirty || Boolean(this.client?.hasPending()));
  }

  async open(id) {
    if (this.doc?.id === id && !this.gone) return true;
    const token = ++this.loadToken;
    let doc;
    try {
      doc = await this.api.getDocument(id);
    } catch (error) {
      if (token !== this.loadToken) return false;
      this.dispatchEvent(new CustomEvent('error', {
        detail: error instanceof ApiError && error.status === 404
          ? 'That document does not exist, or it is not shared with you.'
          : `The document cannot be opened: ${error.message}`,
      }));
      return false;
    }
    if (token !== this.loadToken) return false;
    this.close();
    this.doc = doc;
    this.gone = false;
    this.titleDirty = false;
    this.bodyVersion = null;
    this.title.value = doc.title;
    this.body.value = doc.body;
    this.startClient(doc);
    show(this.empty, false);
    show(this.section, true);
    this.status.textContent = '';
    this.render();
    this.live.subscribe(doc.id, () => this.client?.version ?? doc.version);
    this.analysis.load(doc.id, null);
    this.history.load(doc.id, doc.version);
    this.restoreDraft(doc);
    return true;
  }

  startClient(doc) {
    const id = doc.id;
    const client = new CollabClient({
      version: doc.version,
      text: doc.body,
      user: this.user,
      send: (base, ops) => this.api.edit(id, base, ops),
    });
    this.client = client;
    const mine = (fn) => (event) => {
      if (this.client === client) fn(event.detail ?? {});
    };
    client.addEventListener('remote', mine((detail) => this.onRemote(detail)));
    client.addEventListener('reset', mine(({ text }) => this.showText(text, null)));
    client.addEventListener('state', mine(() => this.onState()));
    client.addEventListener('gap', mine(({ refetch }) => (refetch ? this.refetch() : this.live.resubscribe(id))));
    client.addEventListener('failed', mine((detail) => this.onFailed(detail)));
    client.addEventListener('blocked', mine(() => {
      this.updateSync();
      this.dispatchEvent(new CustomEvent('expired'));
    }));
  }

  /** Sends what is typed and waits (a little) for it to be committed. */
  async settle(ms = SETTLE_MS) {
    const client = this.client;
    if (!client) return true;
    if (this.titleDirty) await this.saveTitle();
    client.flush();
    const deadline = Date.now() + ms;
    while (client.hasPending() && !client.blocked && Date.now() < deadline && this.client === client) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    this.persist();
    return !client.hasPending();
  }

  close() {
    if (this.doc) {
      this.persist();
      this.live.unsubscribe(this.doc.id);
    }
    this.client?.close();
    this.client = null;
    clearTimeout(this.caretTimer);
    clearTimeout(this.catchUpTimer);
    this.presence.clear();
    this.analysis.close();
    this.history.close();
    this.doc = null;
    this.gone = false;
    this.titleDirty = false;
    this.hideBanner();
    show(this.section, false);
    show(this.empty, true);
  }

  render() {
    const doc = this.doc;
    if (!doc) return;
    const access = this.access;
    const editable = this.canEdit();
    this.title.readOnly = !editable;
    this.body.readOnly = !editable;
    show($('readonly-badge'), !editable);
    $('readonly-badge').textContent = this.gone ? 'Closed' : 'Read only: you are a viewer';
    show($('share'), access === 'owner' && !this.gone);
    show($('delete'), access === 'owner' && !this.gone);
    const people = Object.keys(doc.collaborators || {}).length;
    let role;
    if (this.gone) role = 'you no longer have access';
    else if (access === 'owner') role = 'you own it';
    else role = `owned by ${doc.owner}, you are ${access === 'editor' ? 'an editor' : 'a viewer'}`;
    const by = doc.updatedBy === this.user ? 'you' : doc.updatedBy;
    $('doc-meta').textContent = `Version ${doc.version} · changed by ${by} ${ago(doc.updatedAt)} · ${role}` +
      (people && !this.gone ? ` · shared with ${people} ${people === 1 ? 'person' : 'people'}` : '');
    this.updateSync();
  }

  /** The saving state next to the toolbar: saved, saving, or kept here until it can be. */
  updateSync() {
    const client = this.client;
    let state = 'saved';
    let text = 'All changes saved';
    if (!this.doc || !this.canEdit()) {
      show(this.sync, false);
      document.title = this.doc ? `${this.doc.title} · docfan` : 'docfan';
      return;
    }
    if (client?.blocked) {
      state = 'blocked';
      text = 'Sign in again to save · kept on this device';
    } else if (client?.hasPending() || this.titleDirty || this.titleSaving) {
      state = 'saving';
      text = client?.retries ? 'Offline · kept on this device, retrying' : 'Saving…';
    }
    this.sync.dataset.state = state;
    this.sync.textContent = text;
    show(this.sync, true);
    document.title = `${state === 'saved' ? '' : '• '}${this.doc.title} · docfan`;
  }

  say(text, kind = '') {
    this.status.textContent = text;
    this.status.className = `small ${kind || 'muted'}`;
  }

  // The body.

  onBodyInput() {
    const client = this.client;
    if (!client || !this.canEdit()) return;
    const ops = diff(client.text, this.body.value, this.body.selectionEnd);
    if (!ops.length) return;
    client.local(ops);
    this.presence.transform(ops);
    this.sendCaretSoon();
  }

  /** Someone else's edit (already transformed past ours): into the textarea, caret kept. */
  onRemote({ ops, version, actor, frame }) {
    if (ops.length) {
      const before = this.body.value;
      const focused = document.activeElement === this.body;
      const { selectionStart, selectionEnd, selectionDirection, scrollTop } = this.body;
      // Text someone else inserts right at the caret goes after it (and outside a
      // selection), so that two people typing at one spot each keep their words whole.
      const collapsed = selectionStart === selectionEnd;
      const start = transformPosition(cpIndex(before, selectionStart), ops, collapsed);
      const end = transformPosition(cpIndex(before, selectionEnd), ops, true);
      const text = this.client.text;
      this.body.value = text;
      if (focused) this.body.setSelectionRange(utf16Index(text, start), utf16Index(text, end), selectionDirection);
      this.body.scrollTop = scrollTop;
      this.presence.transform(ops);
    }
    this.advance(version, {
      actor,
      at: frame?.at,
      bodyChanged: ops.length > 0 || (frame?.changedFields ?? []).includes('body'),
      title: frame?.title,
      collaborators: frame?.collaborators,
    });
  }

  /** Replaces the shown text (after a refetch), keeping the caret near where it was. */
  showText(text, caretOps) {
    const before = this.body.value;
    if (before === text) return;
    const ops = caretOps ?? diff(before, text);
    const focused = document.activeElement === this.body;
    const { selectionStart, selectionEnd } = this.body;
    const start = transformPosition(cpIndex(before, selectionStart), ops);
    const end = transformPosition(cpIndex(before, selectionEnd), ops);
    this.body.value = text;
    if (focused) this.body.setSelectionRange(utf16Index(text, start), utf16Index(text, end));
    this.presence.transform(ops);
  }

  onState() {
    const client = this.client;
    if (client.version > this.doc.version) {
      // Our own edit was committed (others' arrive through onRemote first).
      this.advance(client.version, { actor: this.user, bodyChanged: true });
    }
    this.persistSoon();
    this.updateSync();
    if (this.pendingReset && !client.inflight) {
      const { version, body } = this.pendingReset;
      this.pendingReset = null;
      client.reset(version, body);
    }
  }

  /** The document reached `version`. */
  advance(version, { actor, at, bodyChanged, title, collaborators }) {
    const doc = this.doc;
    if (!doc || version <= doc.version) return;
    doc.version = version;
    doc.updatedBy = actor ?? doc.updatedBy;
    doc.updatedAt = at ?? new Date().toISOString();
    if (typeof title === 'string') {
      doc.title = title;
      if (!this.titleDirty && this.title.value !== title) this.title.value = title;
    }
    if (collaborators && typeof collaborators === 'object') doc.collaborators = collaborators;
    if (bodyChanged) {
      doc.body = this.client?.serverText ?? doc.body;
      this.bodyVersion = version;
      this.analysis.versionChanged(version);
    }
    this.history.changed(version);
    this.render();
    this.dispatchEvent(new CustomEvent('changed', { detail: { ...doc, body: undefined } }));
  }

  onFailed({ error, detached, base, ops, text }) {
    const status = error?.status;
    if (status === 403) {
      this.say('You can no longer edit this document; your last change was not saved.', 'error');
      this.refetch();
    } else if (status === 404) {
      this.markGone('This document was deleted, or it is no longer shared with you.');
    } else if (status === 409 && error.type.endsWith('/base-version-gone')) {
      this.recover(base, ops, detached ? null : text);
    } else if (status === 413) {
      this.say('That change would make the document too large; it was not saved.', 'error');
    } else {
      this.say(`A change was not saved: ${error?.message ?? 'unknown error'}`, 'error');
    }
    this.persist();
  }

  /**
   * An edit on a version the server no longer keeps operations for: merged by lines
   * with the text of now, when the two do not touch the same lines.
   */
  async recover(base, ops, mine) {
    const id = this.doc?.id;
    try {
      const [then, now] = await Promise.all([this.api.version(id, base), this.api.getDocument(id)]);
      if (this.doc?.id !== id) return;
      const intended = mine ?? apply(then.body, ops);
      const merged = mergeText(then.body, intended, now.body);
      await this.refetch();
      if (merged.conflicted) {
        this.offerDraft(intended, base);
        return;
      }
      const change = diff(this.client.text, merged.text);
      this.applyLocal(change);
      this.say(`Your changes from version ${base} were combined with the current text.`, 'ok');
    } catch (error) {
      if (this.doc?.id === id) this.offerDraft(mine ?? '', base);
    }
  }

  /** A draft that cannot be combined automatically: the person decides. */
  offerDraft(text, base) {
    if (!text) {
      this.say(`Changes made on version ${base} could not be combined with the current text.`, 'error');
      return;
    }
    this.showBanner(`Your unsaved text from version ${base} overlaps changes made since; it could not be combined automatically.`, [
      ['Use my text', () => {
        this.hideBanner();
        this.applyLocal(diff(this.client.text, text));
        this.body.focus();
      }],
      ['Copy my text', () => navigator.clipboard?.writeText(text)],
      ['Discard it', () => this.hideBanner()],
    ]);
  }

  /** A change made here other than by typing (restore, merge): shown and sent. */
  applyLocal(ops) {
    if (!this.client || !ops.length) return;
    const text = apply(this.client.text, ops);
    this.showText(text, ops);
    this.client.local(ops);
    this.client.flush();
  }

  /** Sends what is typed now (Ctrl-S). */
  async save() {
    if (!this.doc || !this.canEdit()) return;
    this.client?.flush();
    if (this.titleDirty) await this.saveTitle();
    if (this.client?.blocked) this.dispatchEvent(new CustomEvent('expired'));
  }

  persist() {
    const client = this.client;
    if (!client || !this.doc || !this.user) return;
    writeDraft(this.user, this.doc.id, client.hasPending() ? client.pending() : [], client.text);
  }

  /** Edits left from an earlier visit (reload, closed tab, expired sign-in) are sent now. */
  restoreDraft(doc) {
    if (!this.canEdit()) return;
    const draft = readDraft(this.user, doc.id);
    if (!draft) return;
    if (draft.text === doc.body) {
      dropDraft(this.user, doc.id);
      return;
    }
    for (const { base, ops } of draft.pieces) {
      if (Number.isInteger(base) && base <= doc.version && Array.isArray(ops)) this.client.submitDetached(base, ops);
    }
    this.say(`Sending the changes you made here ${ago(draft.savedAt)} that were not saved yet.`, 'live');
  }

  // The title.

  async saveTitle() {
    if (!this.doc || !this.canEdit() || !this.titleDirty || this.titleSaving) return;
    const title = this.title.value;
    if (!title.trim()) {
      this.say('A title is needed; the old one stays until there is one.', 'error');
      return;
    }
    const id = this.doc.id;
    this.titleSaving = true;
    this.updateSync();
    try {
      let version = this.doc.version;
      for (let attempt = 0; ; attempt++) {
        try {
          await this.api.patchDocument(id, version, { title });
          break;
        } catch (error) {
          // Someone (perhaps our own typing) made a newer version: the title still applies.
          if (!(error instanceof ApiError && error.status === 412) || attempt >= 5) throw error;
          version = (await this.api.getDocument(id)).version;
        }
      }
      if (this.doc?.id === id && this.title.value === title) this.titleDirty = false;
    } catch (error) {
      if (this.doc?.id !== id) return;
      if (error instanceof ApiError && error.status === 401) return;
      if (error instanceof ApiError && error.status === 404) this.markGone('This document was deleted, or it is no longer shared with you.');
      else this.say(`The title was not saved: ${error.message}`, 'error');
    } finally {
      this.titleSaving = false;
      this.updateSync();
    }
  }

  // Sharing.

  /** A collaborators change made here; the frame of it updates the page. */
  async patchCollaborators(patch) {
    const id = this.doc.id;
    const attempt = async (version) => this.api.patchDocument(id, version, { collaborators: patch });
    let saved;
    try {
      saved = await attempt(this.doc.version);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 412)) throw error;
      // Sharing names who changes and how: the same patch applies to the newer version.
      const latest = await this.api.getDocument(id);
      saved = await attempt(latest.version);
    }
    if (this.doc?.id !== id) return;
    this.doc.collaborators = saved.collaborators;
    this.render();
    this.say(`Sharing saved (version ${saved.version}).`, 'ok');
  }

  // Versions.

  /** Makes a new version whose body is that of `version`. */
  async restoreVersion(version) {
    const id = this.doc?.id;
    if (!id || !this.canEdit()) return;
    const old = await this.api.version(id, version);
    if (this.doc?.id !== id) return;
    const ops = diff(this.client.text, old.body);
    if (!ops.length) {
      this.say(`The text is already that of version ${version}.`);
      return;
    }
    this.applyLocal(ops);
    this.say(`Restored the text of version ${version}.`, 'ok');
  }

  // Presence.

  sendCaretSoon() {
    if (!this.doc || this.caretTimer) return;
    const wait = Math.max(0, this.caretSentAt + PRESENCE_EVERY_MS - Date.now());
    this.caretTimer = setTimeout(() => {
      this.caretTimer = null;
      this.sendCaret();
    }, wait);
  }

  sendCaret() {
    if (!this.doc || this.gone) return;
    const value = this.body.value;
    const { selectionStart, selectionEnd, selectionDirection } = this.body;
    const start = cpIndex(value, selectionStart);
    const end = selectionEnd === selectionStart ? start : start + cpLength(value.slice(selectionStart, selectionEnd));
    const cursor = selectionDirection === 'backward' ? { anchor: end, head: start } : { anchor: start, head: end };
    this.caretSentAt = Date.now();
    this.live.presence(this.doc.id, cursor);
  }

  // Frames.

  /** A live frame about any document. */
  handleFrame(frame) {
    if (!this.doc || frame.documentId !== this.doc.id) return;
    switch (frame.type) {
      case 'subscribed':
        // Replayed versions follow; if they do not, the document is read again.
        clearTimeout(this.catchUpTimer);
        if (frame.version > this.client.version) {
          this.catchUpTimer = setTimeout(() => {
            if (this.doc && this.client.version < frame.version) this.refetch();
          }, 2000);
        }
        if (document.activeElement === this.body) this.sendCaretSoon();
        break;
      case 'document.created':
      case 'document.updated':
        this.client.frame(frame);
        break;
      case 'document.deleted':
        if (frame.version <= this.doc.version) return;
        this.markGone(`${frame.actor === this.user ? 'You' : frame.actor} deleted this document.`);
        break;
      case 'access.revoked':
        this.markGone('Your access to this document was removed.');
        break;
      case 'analysis.completed':
        this.analysis.update(frame.documentId, frame.analysis);
        break;
      case 'presence':
        if (frame.user && frame.user !== this.user) this.presence.set(frame.user, frame.cursor);
        break;
      case 'presence.left':
        if (frame.user) this.presence.remove(frame.user);
        break;
      case 'error':
        if (frame.code === 'replay_incomplete') this.refetch();
        else if (frame.code === 'document_not_found') this.markGone('This document is no longer available to you.');
        break;
      default:
        break;
    }
  }

  /** Reads the document again: after a gap no replay filled, or a refused edit. */
  async refetch() {
    if (!this.doc) return;
    const id = this.doc.id;
    try {
      const latest = await this.api.getDocument(id);
      if (this.doc?.id !== id) return;
      const doc = this.doc;
      if (latest.version > doc.version) {
        doc.title = latest.title;
        if (!this.titleDirty) this.title.value = latest.title;
      }
      doc.collaborators = latest.collaborators;
      doc.owner = latest.owner;
      if (!this.client.reset(latest.version, latest.body)) this.pendingReset = latest;
      if (latest.version > doc.version) {
        doc.version = latest.version;
        doc.updatedAt = latest.updatedAt;
        doc.updatedBy = latest.updatedBy;
        this.history.changed(latest.version);
        this.dispatchEvent(new CustomEvent('changed', { detail: { ...latest, body: undefined } }));
      }
      this.render();
    } catch (error) {
      if (this.doc?.id !== id) return;
      if (error instanceof ApiError && error.status === 404) {
        this.markGone('This document was deleted, or it is no longer shared with you.');
      }
    }
  }

  markGone(message) {
    if (!this.doc || this.gone) return;
    this.gone = true;
    this.persist();
    this.live.unsubscribe(this.doc.id);
    this.client?.close();
    this.presence.clear();
    this.history.stop();
    this.render();
    this.showBanner(message, [['Close document', () => this.dispatchEvent(new CustomEvent('closed'))]]);
    this.dispatchEvent(new CustomEvent('gone', { detail: this.doc.id }));
  }

  showBanner(message, actions) {
    clear(this.banner).append(el('p', {}, message),
      el('div', { class: 'banner-actions' }, actions.map(([label, run]) =>
        el('button', { type: 'button', onclick: run }, label))));
    show(this.banner, true);
  }

  hideBanner() {
    show(this.banner, false);
    clear(this.banner);
  }
}
