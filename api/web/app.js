// The web editor's entry point: sign-in, the document list, and the wiring between the
// editor, the live connection, search and the side panels.

import { $, el, clear, show, timeEl, clockTime, ago } from './dom.js';
import { Api, ApiError } from './api.js';
import { Session, takeFragmentToken } from './session.js';
import { LiveConnection } from './live.js';
import { Editor } from './editor.js';
import { AnalysisPanel, HistoryPanel, SearchPanel, renderVersion } from './panels.js';
import { wireDialogs, wireNewDocument, wireDelete, wireShare, wireToken, openDialog, closeDialog } from './dialogs.js';

/** How long before expiry the page asks for a new token. */
const RENEW_WARNING_MS = 10 * 60 * 1000;

class DocumentList {
  constructor(api, open) {
    this.api = api;
    this.open = open;
    this.list = $('doc-list');
    this.status = $('docs-status');
    this.more = $('docs-more');
    this.cursor = null;
    this.items = new Map();
    this.current = null;
    this.more.addEventListener('click', () => this.load(false));
  }

  async load(reset = true) {
    if (reset) {
      this.cursor = null;
      this.items.clear();
    }
    this.status.textContent = 'Loading…';
    this.status.classList.remove('error');
    try {
      const page = await this.api.listDocuments(reset ? undefined : this.cursor);
      for (const doc of page?.items ?? []) this.items.set(doc.id, doc);
      this.cursor = page?.nextCursor ?? null;
      this.status.textContent = this.items.size ? '' : 'No documents yet. Create one, or ask someone to share theirs.';
      this.status.dataset.empty = this.items.size ? '' : 'yes';
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      this.status.textContent = `The documents cannot be listed: ${error.message}`;
      this.status.classList.add('error');
    }
    this.render();
  }

  upsert(doc) {
    this.items.set(doc.id, doc);
    this.render();
  }

  remove(id) {
    this.items.delete(id);
    this.render();
  }

  select(id) {
    this.current = id;
    for (const button of this.list.querySelectorAll('button[data-id]')) {
      if (button.dataset.id === id) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
    }
  }

  render() {
    const docs = [...this.items.values()].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    clear(this.list);
    if (docs.length && this.status.dataset.empty) this.status.textContent = '';
    for (const doc of docs) {
      const role = doc.owner === this.user ? 'owner' : doc.collaborators?.[this.user] ?? '';
      this.list.append(el('li', {},
        el('button', {
          type: 'button',
          class: 'doc-item',
          dataset: { id: doc.id },
          'aria-current': doc.id === this.current ? 'true' : null,
          onclick: () => this.open(doc.id),
        },
        el('span', { class: 'doc-title' }, doc.title),
        el('span', { class: 'doc-sub' },
          el('span', { class: `role role-${role}` }, role === 'owner' ? 'yours' : `${role} · ${doc.owner}`),
          ' · ', timeEl(doc.updatedAt)))));
    }
    show(this.more, Boolean(this.cursor));
  }
}

class App {
  constructor() {
    this.session = null;
    this.api = new Api(() => this.session?.token ?? '', () => this.expire());
    this.live = new LiveConnection(() => this.session?.token ?? '');
    this.analysis = new AnalysisPanel(this.api);
    this.history = new HistoryPanel(this.api, (version) => this.showVersion(version));
    this.search = new SearchPanel(this.api, (id) => this.openDocument(id));
    this.list = new DocumentList(this.api, (id) => this.openDocument(id));
    // One editor for the page's lifetime; signing in tells it who is editing.
    this.editor = new Editor({ api: this.api, live: this.live, user: null, analysis: this.analysis, history: this.history });
    this.editor.addEventListener('changed', (event) => this.list.upsert(event.detail));
    this.editor.addEventListener('gone', (event) => this.list.remove(event.detail));
    this.editor.addEventListener('closed', () => this.closeDocument());
    this.editor.addEventListener('error', (event) => this.notify(event.detail));
    this.editor.addEventListener('expired', () => this.expire());
    this.renewTimer = null;
    wireDialogs();
    this.openNew = wireNewDocument((title) => this.create(title));
    this.openDelete = wireDelete(() => this.remove());
    this.openShare = wireShare((patch) => this.editor.patchCollaborators(patch));
    this.openToken = wireToken((token) => this.renew(token));
    this.wire();
  }

  wire() {
    $('sign-in-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const error = $('sign-in-error');
      error.textContent = '';
      try {
        this.signIn($('sign-in-token').value);
        $('sign-in-token').value = '';
      } catch (e) {
        error.textContent = e.message;
      }
    });
    $('sign-out').addEventListener('click', () => this.signOut());
    $('new-doc').addEventListener('click', () => this.openNew());
    $('share').addEventListener('click', () => this.editor?.doc && this.openShare(this.editor.doc));
    $('delete').addEventListener('click', () => this.editor?.doc && this.openDelete(this.editor.doc.title));
    $('back-to-list').addEventListener('click', () => this.closeDocument());
    $('history-refresh').addEventListener('click', () => this.history.refresh());
    this.live.addEventListener('status', (event) => this.showConnection(event.detail));
    this.live.addEventListener('frame', (event) => this.onFrame(event.detail));
    document.addEventListener('keydown', (event) => {
      if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === 's') {
        event.preventDefault();
        if (!document.querySelector('dialog[open]')) this.editor.save();
      }
    });
    // Documents shared while the tab was in the background show up when it is back.
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && this.session) this.list.load();
    });
    // Nothing to ask before leaving: what is not sent yet stays as a draft.
    window.addEventListener('pagehide', () => this.editor.persist());
    Session.watch((token) => this.fromOtherTab(token));
    $('version-restore').addEventListener('click', async () => {
      const dialog = $('version-dialog');
      const version = Number(dialog.dataset.version);
      const button = $('version-restore');
      button.disabled = true;
      try {
        await this.editor.restoreVersion(version);
        closeDialog(dialog);
        $('body-input').focus();
      } catch (error) {
        clear($('version-body')).append(el('p', { class: 'error' }, `Version ${version} cannot be restored: ${error.message}`));
      } finally {
        button.disabled = false;
      }
    });
    window.addEventListener('hashchange', () => {
      const token = takeFragmentToken();
      if (token) {
        try {
          this.signIn(token);
        } catch (e) {
          this.showSignedOut(`That sign-in link did not work: ${e.message}`);
        }
        return;
      }
      const id = new URLSearchParams(location.hash.slice(1)).get('doc');
      if (id && id !== this.editor?.id) this.openDocument(id);
    });
  }

  start() {
    const token = takeFragmentToken();
    if (token) {
      try {
        this.signIn(token);
        return;
      } catch (e) {
        this.showSignedOut(`That sign-in link did not work: ${e.message}`);
        return;
      }
    }
    const session = Session.restore();
    if (session) this.begin(session);
    else if (Session.stored()?.expired()) {
      this.showSignedOut('Your sign-in has expired. Sign in again: changes you had not saved are kept on this device and sent when you open the document.');
    } else this.showSignedOut();
  }

  /** Another tab signed in, renewed or signed out: this one follows. */
  fromOtherTab(token) {
    if (!token) {
      if (!this.session) return;
      this.editor.persist();
      this.end();
      this.showSignedOut('You signed out in another tab.');
      return;
    }
    let next;
    try {
      next = new Session(token);
    } catch {
      return;
    }
    if (next.expired()) return;
    if (this.session?.user === next.user) {
      this.useToken(next.token);
    } else {
      if (this.session) {
        this.editor.persist();
        this.end();
      }
      this.begin(next);
    }
  }

  signIn(token) {
    const session = new Session(token);
    if (session.expired()) throw new Error('this token has expired; run docfan token again');
    if (this.session) this.end();
    session.save();
    this.begin(session);
  }

  begin(session) {
    this.session = session;
    this.expired = false;
    this.list.user = session.user;
    this.editor.user = session.user;
    this.renewDismissed = false;
    $('who-name').textContent = session.user;
    show($('who'), true);
    show($('search-form'), true);
    show($('connection'), true);
    show($('signed-out'), false);
    show($('workspace'), true);
    this.live.start();
    this.list.load();
    this.watchExpiry();
    clearInterval(this.clockTimer);
    // Relative times ("2 minutes ago") age; refresh them now and then.
    this.clockTimer = setInterval(() => {
      this.editor.render();
      for (const node of document.querySelectorAll('time[datetime]')) node.textContent = ago(node.dateTime);
    }, 30_000);
    const id = new URLSearchParams(location.hash.slice(1)).get('doc');
    if (id) this.openDocument(id);
  }

  /** Leaves the signed-in state without touching the stored token. */
  end() {
    this.live.stop();
    this.editor.close();
    this.editor.user = null;
    this.session = null;
    clearInterval(this.renewTimer);
    clearTimeout(this.expiryTimer);
    clearInterval(this.clockTimer);
    clear($('banners'));
    this.search.reset();
    this.list.items.clear();
    this.list.render();
    document.body.classList.remove('doc-open');
    for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  }

  async signOut() {
    await this.editor.settle();
    Session.clear();
    this.end();
    history.replaceState(null, '', location.pathname + location.search);
    this.showSignedOut('You are signed out.');
  }

  /**
   * The server refused the token (expired or revoked). The page stays as it is: what is
   * typed is kept on this device and sent once a new token is pasted here, or a sign-in
   * link is opened in another tab.
   */
  expire() {
    if (!this.session || this.expired) return;
    this.expired = true;
    this.editor.client?.block();
    this.live.stop();
    clearInterval(this.renewTimer);
    document.getElementById('renew-banner')?.remove();
    const user = this.session.user;
    const banner = this.notify(
      `Your sign-in has expired. Run docfan token ${user} and paste the new token, or open its link in another tab: ` +
      'what you type meanwhile is kept on this device and saved once you are signed in again.',
      [['Paste a new token', () => this.openToken(user)]],
    );
    banner.id = 'expired-banner';
  }

  showSignedOut(reason) {
    show($('who'), false);
    show($('search-form'), false);
    show($('connection'), false);
    show($('workspace'), false);
    show($('signed-out'), true);
    const note = $('signed-out-reason');
    note.textContent = reason ?? '';
    show(note, Boolean(reason));
    document.title = 'Sign in · docfan';
    $('sign-in-token').focus();
  }

  notify(message, actions = [], onDismiss = () => {}) {
    const banner = el('div', { class: 'banner', role: 'alert' },
      el('p', {}, message),
      el('div', { class: 'banner-actions' },
        actions.map(([label, run]) => el('button', { type: 'button', onclick: () => { banner.remove(); run(); } }, label)),
        el('button', { type: 'button', class: 'quiet', onclick: () => { banner.remove(); onDismiss(); } }, 'Dismiss')));
    $('banners').append(banner);
    return banner;
  }

  async openDocument(id) {
    if (!this.session || this.editor.id === id) return;
    // Edits on their way are given a moment; anything left stays as a draft.
    await this.editor.settle();
    const opened = await this.editor.open(id);
    if (!opened) return;
    this.list.select(id);
    show($('panels'), true);
    document.body.classList.add('doc-open');
    history.replaceState(null, '', `#doc=${encodeURIComponent(id)}`);
  }

  async closeDocument() {
    await this.editor.settle();
    this.editor.close();
    this.list.select(null);
    show($('panels'), false);
    document.body.classList.remove('doc-open');
    history.replaceState(null, '', location.pathname + location.search);
    $('docs-heading').scrollIntoView({ block: 'nearest' });
    $('new-doc').focus();
  }

  async create(title) {
    const doc = await this.api.createDocument({ title, body: '' });
    this.list.upsert(doc);
    await this.openDocument(doc.id);
    // The dialog gives focus back to what opened it when it closes: close it first.
    closeDialog($('new-dialog'));
    $('body-input').focus();
  }

  async remove() {
    const id = this.editor.id;
    await this.api.deleteDocument(id);
    this.editor.close();
    this.list.remove(id);
    this.closeDocument();
  }

  async showVersion(version) {
    const id = this.editor?.id;
    if (!id) return;
    const dialog = $('version-dialog');
    dialog.dataset.version = String(version);
    show($('version-restore'), this.editor.canEdit());
    $('version-heading').textContent = `Version ${version}`;
    clear($('version-body')).append(el('p', { class: 'muted' }, 'Loading…'));
    openDialog(dialog, dialog.querySelector('[data-close]'));
    try {
      const entry = await this.api.historyVersion(id, version);
      renderVersion($('version-body'), entry);
    } catch (error) {
      clear($('version-body')).append(el('p', { class: 'error' }, `This version cannot be shown: ${error.message}`));
    }
  }

  onFrame(frame) {
    if (frame.type === 'error' && !frame.documentId) {
      if (frame.code === 'invalid_token' || frame.code === 'token_expired' || frame.code === 'wrong_user') {
        this.notify(`The new token was refused: ${frame.message}`);
      }
      return;
    }
    if (frame.type === 'authenticated') {
      this.watchExpiry();
      return;
    }
    if ((frame.type === 'document.updated' || frame.type === 'document.created') && frame.document) {
      this.list.upsert(frame.document);
    } else if (frame.type === 'document.deleted' || frame.type === 'access.revoked') {
      this.list.remove(frame.documentId);
    }
    this.editor?.handleFrame(frame);
  }

  showConnection(status) {
    const node = $('connection');
    node.dataset.state = status.state;
    clearInterval(this.countdown);
    let text;
    switch (status.state) {
      case 'live': text = 'Live'; break;
      case 'connecting': text = 'Connecting…'; break;
      case 'reconnecting': {
        // The countdown is for the eye only: screen readers hear the state once.
        text = 'Offline, retrying';
        const left = () => {
          $('connection-countdown').textContent = ` in ${Math.max(1, Math.round((status.at - Date.now()) / 1000))} s`;
        };
        left();
        this.countdown = setInterval(left, 1000);
        break;
      }
      default: text = 'Offline';
    }
    if (status.state !== 'reconnecting') $('connection-countdown').textContent = '';
    $('connection-text').textContent = text;
    node.title = status.state === 'live'
      ? 'Changes by others appear as they are saved'
      : 'Live updates are paused; saving still works, and missed changes are caught up on reconnect';
  }

  watchExpiry() {
    clearInterval(this.renewTimer);
    const check = () => {
      const session = this.session;
      if (!session) return;
      const left = session.remaining();
      const existing = document.getElementById('renew-banner');
      if (left > RENEW_WARNING_MS) {
        existing?.remove();
        return;
      }
      if (left <= 0) {
        this.expire();
        return;
      }
      const text = `Your sign-in ends at ${clockTime(session.expiresAt)}. Get a new token with docfan token ${session.user} to stay signed in.`;
      // Once dismissed, the reminder returns only in the last minute.
      if (this.renewDismissed && left > 60_000) return;
      if (existing) {
        existing.querySelector('p').textContent = text;
      } else {
        const banner = this.notify(text, [['Paste a new token', () => this.openToken(session.user)]], () => {
          this.renewDismissed = true;
        });
        banner.id = 'renew-banner';
      }
    };
    check();
    this.renewTimer = setInterval(check, 15_000);
    // And at the moment it ends, so nothing is sent with a token the server refuses.
    clearTimeout(this.expiryTimer);
    const left = this.session?.remaining() ?? Infinity;
    if (left < 2 ** 31 - 1000) this.expiryTimer = setTimeout(check, Math.max(0, left) + 50);
  }

  /** A token pasted here: checked, kept for every tab, and used at once. */
  async renew(token) {
    this.session.replace(token);
    this.useToken(this.session.token);
  }

  useToken(token) {
    if (!this.session) return;
    if (this.session.token !== token) this.session.replace(token);
    this.renewDismissed = false;
    if (this.expired) {
      // The connection was closed with the old token: a new one, and catch up.
      this.expired = false;
      this.live.start();
      this.list.load();
      if (this.editor.id) this.live.resubscribe(this.editor.id);
      closeDialog($('token-dialog'));
    } else {
      this.live.refreshToken(token);
    }
    this.editor.client?.resume();
    this.watchExpiry();
    document.getElementById('renew-banner')?.remove();
    document.getElementById('expired-banner')?.remove();
  }
}

new App().start();
