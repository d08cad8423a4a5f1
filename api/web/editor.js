// The document editor: the server copy the local edits are based on, saving with
// If-Match, live changes from others, and the flow when a save meets 412.

import { $, el, clear, show, ago, clockTime } from './dom.js';
import { ApiError } from './api.js';
import { openDialog, closeDialog } from './dialogs.js';
import { mergeText, markUniqueLines } from './merge.js';

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
    /** The server copy the inputs are based on. */
    this.doc = null;
    /** A newer server copy not loaded because the inputs have unsaved edits. */
    this.theirs = null;
    /** The highest version heard of, from any source. */
    this.seen = 0;
    this.saving = false;
    this.gone = false;
    this.conflictState = null;
    this.loadToken = 0;

    this.section = $('editor');
    this.empty = $('empty-editor');
    this.title = $('title-input');
    this.body = $('body-input');
    this.saveButton = $('save');
    this.status = $('editor-status');
    this.banner = $('doc-banner');

    this.title.addEventListener('input', () => this.updateDirty());
    this.body.addEventListener('input', () => this.updateDirty());
    this.saveButton.addEventListener('click', () => this.save());
    this.refetchSoon = null;
    this.wireConflictDialog();
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

  isDirty() {
    return Boolean(this.doc) && (this.title.value !== this.doc.title || this.body.value !== this.doc.body);
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
    this.seen = doc.version;
    this.gone = false;
    this.title.value = doc.title;
    this.body.value = doc.body;
    show(this.empty, false);
    show(this.section, true);
    this.status.textContent = '';
    this.render();
    this.live.subscribe(doc.id, () => this.seen);
    this.analysis.load(doc.id, doc.version);
    this.history.load(doc.id, doc.version);
    return true;
  }

  close() {
    if (this.doc) this.live.unsubscribe(this.doc.id);
    clearTimeout(this.refetchSoon);
    this.analysis.close();
    this.history.close();
    this.doc = null;
    this.theirs = null;
    this.gone = false;
    this.hideBanner();
    closeDialog($('conflict-dialog'));
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
    this.saveButton.hidden = !editable;
    show($('readonly-badge'), !editable);
    $('readonly-badge').textContent = this.gone ? 'Closed' : 'Read only: you are a viewer';
    show($('share'), access === 'owner' && !this.gone);
    show($('delete'), access === 'owner' && !this.gone);
    const people = Object.keys(doc.collaborators || {}).length;
    const role = access === 'owner' ? 'you own it' : `owned by ${doc.owner}, you are ${access === 'editor' ? 'an editor' : 'a viewer'}`;
    $('doc-meta').textContent = `Version ${doc.version} · saved by ${doc.updatedBy} ${ago(doc.updatedAt)} · ${role}` +
      (people ? ` · shared with ${people} ${people === 1 ? 'person' : 'people'}` : '');
    this.updateDirty();
  }

  updateDirty() {
    const dirty = this.isDirty();
    show($('dirty'), dirty && this.canEdit());
    this.saveButton.disabled = this.saving || !dirty;
    document.title = this.doc ? `${dirty ? '• ' : ''}${this.doc.title} · docfan` : 'docfan';
  }

  say(text, kind = '') {
    this.status.textContent = text;
    this.status.className = `small ${kind || 'muted'}`;
  }

  /** Takes `doc` as the new base; `replaceInputs` also loads its text into the inputs. */
  adopt(doc, replaceInputs) {
    const previous = this.doc;
    this.doc = doc;
    this.seen = Math.max(this.seen, doc.version);
    if (this.theirs && this.theirs.version <= doc.version) {
      this.theirs = null;
      this.hideBanner();
    }
    if (replaceInputs) {
      this.setInput(this.title, doc.title);
      this.setInput(this.body, doc.body);
    }
    this.render();
    if (!previous || previous.version !== doc.version) {
      this.analysis.versionChanged(doc.version);
      this.history.changed(doc.version);
      this.dispatchEvent(new CustomEvent('changed', { detail: doc }));
    }
  }

  /** Replaces an input's text, keeping the caret where it was when the input has focus. */
  setInput(input, value) {
    if (input.value === value) return;
    const focused = document.activeElement === input;
    const { selectionStart, selectionEnd } = input;
    input.value = value;
    if (focused) input.setSelectionRange(Math.min(selectionStart, value.length), Math.min(selectionEnd, value.length));
  }

  async save() {
    if (!this.doc || !this.canEdit() || this.saving) return;
    if (!this.title.value.trim()) {
      this.say('A title is needed before saving.', 'error');
      this.title.focus();
      return;
    }
    if (!this.isDirty()) {
      this.say('Nothing to save.');
      return;
    }
    await this.put(this.doc.version);
  }

  async put(version) {
    const id = this.doc.id;
    const sent = { title: this.title.value, body: this.body.value };
    this.saving = true;
    this.updateDirty();
    this.say('Saving…');
    try {
      const saved = await this.api.replaceDocument(id, version, sent);
      if (this.doc?.id !== id) return;
      this.adopt(saved, false);
      this.say(`Saved version ${saved.version} at ${clockTime(saved.updatedAt)}.`, 'ok');
    } catch (error) {
      if (this.doc?.id !== id) return;
      if (error instanceof ApiError && error.status === 412) {
        this.say('Someone else saved first.', 'error');
        await this.conflict(sent);
      } else if (error instanceof ApiError && error.status === 403) {
        this.say('You can no longer edit this document.', 'error');
        this.refetch();
      } else if (error instanceof ApiError && error.status === 404) {
        this.markGone('This document was deleted, or it is no longer shared with you.');
      } else {
        this.say(`Not saved: ${error.message}`, 'error');
      }
    } finally {
      this.saving = false;
      this.updateDirty();
    }
  }

  /** Rebases after a collaborators change made here (title and body are unchanged). */
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
    if (saved.version === this.doc.version + 1 && saved.title === this.doc.title && saved.body === this.doc.body) {
      this.adopt(saved, false);
    } else {
      this.receive(saved, this.user);
    }
    this.say(`Sharing saved (version ${saved.version}).`, 'ok');
  }

  /** A live frame about any document. */
  handleFrame(frame) {
    if (!this.doc || frame.documentId !== this.doc.id) return;
    switch (frame.type) {
      case 'subscribed':
        if (frame.version > this.seen) this.scheduleRefetch(null);
        break;
      case 'document.created':
      case 'document.updated': {
        if (!(frame.version > this.seen)) return;
        this.seen = frame.version;
        // The answer to our own PUT carries this version; do not treat it as theirs.
        if (this.saving && frame.actor === this.user) return;
        if (frame.document) this.receive(frame.document, frame.actor);
        else this.scheduleRefetch(frame.actor);
        break;
      }
      case 'document.deleted':
        if (frame.version <= this.doc.version) return;
        this.seen = frame.version;
        this.markGone(`${frame.actor === this.user ? 'You' : frame.actor} deleted this document.`);
        break;
      case 'access.revoked':
        this.markGone('Your access to this document was removed.');
        break;
      case 'analysis.completed':
        this.analysis.update(frame.documentId, frame.analysis);
        break;
      case 'error':
        if (frame.code === 'replay_incomplete') this.scheduleRefetch(null);
        else if (frame.code === 'document_not_found') this.markGone('This document is no longer available to you.');
        break;
      default:
        break;
    }
  }

  /** Several replayed frames (they carry no document) end in one read of the latest. */
  scheduleRefetch(actor) {
    this.refetchActor = actor ?? this.refetchActor ?? null;
    clearTimeout(this.refetchSoon);
    this.refetchSoon = setTimeout(() => this.refetch(), 150);
  }

  async refetch() {
    if (!this.doc) return;
    const id = this.doc.id;
    const actor = this.refetchActor;
    this.refetchActor = null;
    try {
      const latest = await this.api.getDocument(id);
      if (this.doc?.id === id) this.receive(latest, actor ?? latest.updatedBy);
    } catch (error) {
      if (this.doc?.id !== id) return;
      if (error instanceof ApiError && error.status === 404) {
        this.markGone('This document was deleted, or it is no longer shared with you.');
      }
    }
  }

  /** A newer server copy made by `actor`. */
  receive(remote, actor) {
    if (!this.doc || remote.version <= this.doc.version) return;
    this.seen = Math.max(this.seen, remote.version);
    const who = actor === this.user ? 'You (in another window)' : actor;
    const sameText = remote.title === this.doc.title && remote.body === this.doc.body;
    if (!this.isDirty()) {
      this.adopt(remote, true);
      this.say(`${who} saved version ${remote.version} at ${clockTime(remote.updatedAt)}.`, 'live');
      this.flash();
    } else if (sameText) {
      // Only the sharing changed: the local edits still apply to the new version.
      this.adopt(remote, false);
    } else {
      this.theirs = remote;
      this.theirsActor = actor;
      this.seen = Math.max(this.seen, remote.version);
      this.showBanner(`${who} saved version ${remote.version} while you were editing.`, [
        ['Load theirs', () => {
          this.adopt(this.theirs, true);
          this.say(`Loaded version ${this.doc.version} by ${actor}.`, 'live');
          this.body.focus();
        }],
        ['Keep editing', () => {
          this.hideBanner();
          this.say(`Your next save will ask how to combine your edits with version ${remote.version}.`);
          this.body.focus();
        }],
      ]);
      this.history.changed(remote.version);
      this.dispatchEvent(new CustomEvent('changed', { detail: remote }));
    }
  }

  flash() {
    this.body.classList.remove('flash');
    void this.body.offsetWidth;
    this.body.classList.add('flash');
  }

  markGone(message) {
    if (!this.doc) return;
    this.gone = true;
    this.live.unsubscribe(this.doc.id);
    clearTimeout(this.refetchSoon);
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

  // The 412 flow: both versions side by side; keep mine, take theirs, or merge.

  async conflict(mine) {
    const id = this.doc.id;
    let theirs;
    try {
      theirs = await this.api.getDocument(id);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.markGone('This document was deleted, or it is no longer shared with you.');
      } else {
        this.say(`Someone else saved first, and their version cannot be read: ${error.message}`, 'error');
      }
      return;
    }
    if (this.doc?.id !== id) return;
    if (theirs.title === mine.title && theirs.body === mine.body) {
      this.adopt(theirs, false);
      this.say(`Version ${theirs.version} already has your text.`, 'ok');
      return;
    }
    this.conflictState = { base: { title: this.doc.title, body: this.doc.body, version: this.doc.version }, theirs };
    this.theirs = theirs;
    // The live frame of their save may still be on its way: it is not news any more.
    this.seen = Math.max(this.seen, theirs.version);
    this.hideBanner();
    const dialog = $('conflict-dialog');
    $('conflict-summary').textContent =
      `${theirs.updatedBy} saved version ${theirs.version} (${ago(theirs.updatedAt)}) while you were editing version ${this.doc.version}. ` +
      'Keep your text, take theirs, or merge the two.';
    $('conflict-theirs-heading').textContent = `Theirs: version ${theirs.version}, saved by ${theirs.updatedBy}`;
    this.fillCompare();
    show($('conflict-merge'), false);
    dialog.classList.remove('merging');
    for (const button of ['conflict-keep-mine', 'conflict-take-theirs', 'conflict-merge-start']) show($(button), true);
    show($('conflict-merge-save'), false);
    openDialog(dialog, $('conflict-keep-mine'));
  }

  fillCompare() {
    const { theirs } = this.conflictState;
    const mine = { title: this.title.value, body: this.body.value };
    const fill = (titleNode, bodyNode, side, other) => {
      titleNode.textContent = side.title;
      titleNode.classList.toggle('differs', side.title !== other.title);
      clear(bodyNode).append(...markUniqueLines(side.body, other.body).map(({ line, unique }) =>
        el('span', { class: unique ? 'line differs' : 'line' }, line === '' ? '\u200b' : line)));
    };
    fill($('conflict-mine-title'), $('conflict-mine-body'), mine, theirs);
    fill($('conflict-theirs-title'), $('conflict-theirs-body'), theirs, mine);
  }

  wireConflictDialog() {
    const dialog = $('conflict-dialog');
    const finish = () => {
      this.conflictState = null;
      closeDialog(dialog);
    };
    dialog.addEventListener('close', () => {
      if (!this.conflictState) return;
      // Back to editing: the newer version stays on offer.
      const { theirs } = this.conflictState;
      this.conflictState = null;
      if (this.doc && this.theirs === theirs) {
        this.showBanner(`Version ${theirs.version} by ${theirs.updatedBy} is newer than the one you are editing.`, [
          ['Load theirs', () => this.adopt(this.theirs, true)],
          ['Compare again', () => this.conflict({ title: this.title.value, body: this.body.value })],
        ]);
      }
    });
    $('conflict-keep-mine').addEventListener('click', async () => {
      const { theirs } = this.conflictState;
      finish();
      await this.put(theirs.version);
      this.body.focus();
    });
    $('conflict-take-theirs').addEventListener('click', () => {
      const { theirs } = this.conflictState;
      finish();
      this.adopt(theirs, true);
      this.say(`Loaded version ${theirs.version} by ${theirs.updatedBy}; your edits were discarded.`);
      this.body.focus();
    });
    $('conflict-merge-start').addEventListener('click', () => {
      const { base, theirs } = this.conflictState;
      const mine = { title: this.title.value, body: this.body.value };
      const merged = mergeText(base.body, mine.body, theirs.body, `theirs (version ${theirs.version} by ${theirs.updatedBy})`);
      $('merge-title').value = mine.title !== base.title ? mine.title : theirs.title;
      $('merge-body').value = merged.text;
      $('conflict-merge-hint').textContent = merged.conflicted
        ? 'Both of you changed the same lines: both are kept between <<<<<<< and >>>>>>> markers. Edit the text into what it should say, then save.'
        : 'Your changes and theirs are combined below. Check the text, then save.';
      show($('conflict-merge'), true);
      $('conflict-dialog').classList.add('merging');
      for (const button of ['conflict-keep-mine', 'conflict-take-theirs', 'conflict-merge-start']) show($(button), false);
      show($('conflict-merge-save'), true);
      $('merge-body').focus();
    });
    $('conflict-merge-save').addEventListener('click', async () => {
      const { theirs } = this.conflictState;
      const title = $('merge-title').value;
      if (!title.trim()) {
        $('conflict-error').textContent = 'A title is needed.';
        $('merge-title').focus();
        return;
      }
      finish();
      this.title.value = title;
      this.body.value = $('merge-body').value;
      this.updateDirty();
      await this.put(theirs.version);
      this.body.focus();
    });
  }
}
