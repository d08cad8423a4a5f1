// The side panels (analysis, history) and the search results. Server text is always
// inserted as text; search snippets are rebuilt from text and <mark> only.

import { $, el, clear, show, timeEl, fullTime, plural, debounce } from './dom.js';
import { ApiError } from './api.js';
import { groupSessions } from './sessions.js';

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (whole, name) => {
    if (name[0] === '#') {
      const code = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return ENTITIES[name] ?? whole;
  });
}

/**
 * Rebuilds a search snippet as DOM nodes. The snippet is escaped text with matches
 * wrapped in `<mark>…</mark>`; anything else that looks like markup means the snippet is
 * not what the contract promises, and it is shown as plain text with the tags removed.
 */
export function snippetNodes(snippet) {
  const parts = String(snippet).split(/(<mark>|<\/mark>)/);
  const nodes = [];
  let inMark = false;
  let valid = true;
  for (const part of parts) {
    if (part === '<mark>') {
      if (inMark) valid = false;
      inMark = true;
    } else if (part === '</mark>') {
      if (!inMark) valid = false;
      inMark = false;
    } else if (part) {
      if (/[<>]/.test(part)) valid = false;
      const text = decodeEntities(part);
      nodes.push(inMark ? el('mark', {}, text) : document.createTextNode(text));
    }
  }
  if (!valid || inMark) {
    return [document.createTextNode(decodeEntities(String(snippet).replace(/<[^>]*>/g, '')))];
  }
  return nodes;
}

const LANGUAGES = (() => {
  try {
    return new Intl.DisplayNames(undefined, { type: 'language' });
  } catch {
    return null;
  }
})();

const ISO639_3_TO_1 = {
  eng: 'en', fra: 'fr', deu: 'de', spa: 'es', ita: 'it', por: 'pt', nld: 'nl', rus: 'ru',
  pol: 'pl', swe: 'sv', dan: 'da', nob: 'nb', fin: 'fi', tur: 'tr', ces: 'cs', ukr: 'uk',
  jpn: 'ja', cmn: 'zh', kor: 'ko', ara: 'ar', hin: 'hi', ell: 'el', hun: 'hu', ron: 'ro',
};

export function languageName(code) {
  if (!code || code === 'und') return 'undetermined';
  const short = ISO639_3_TO_1[code] ?? code;
  try {
    const name = LANGUAGES?.of(short);
    if (name && name !== short) return `${name} (${code})`;
  } catch {
    // Not a language tag the browser knows: show the code.
  }
  return code;
}

function readingTime(seconds) {
  if (seconds < 60) return `${Math.max(1, seconds)} s`;
  return `about ${Math.round(seconds / 60)} min`;
}

export class AnalysisPanel {
  constructor(api) {
    this.api = api;
    this.root = $('analysis-body');
    this.documentId = null;
    this.shown = null;
  }

  async load(documentId, currentVersion, attempt = 0) {
    clearTimeout(this.retryTimer);
    this.documentId = documentId;
    this.currentVersion = currentVersion;
    if (!attempt) {
      this.shown = null;
      clear(this.root).append(el('p', { class: 'muted' }, 'Loading…'));
    }
    try {
      const analysis = await this.api.analysis(documentId);
      if (this.documentId === documentId && !(this.shown?.version > analysis.version)) this.render(analysis);
    } catch (error) {
      if (this.documentId !== documentId || this.shown) return;
      clear(this.root);
      if (error instanceof ApiError && error.status === 404) {
        this.root.append(el('p', { class: 'muted' }, 'No analysis yet: it appears shortly after the document is saved.'));
        // It may have been published before this page was listening: ask again a few times.
        if (attempt < 5) {
          this.retryTimer = setTimeout(() => {
            if (this.documentId === documentId && !this.shown) this.load(documentId, this.currentVersion, attempt + 1);
          }, 1000 * 2 ** attempt);
        }
      } else {
        this.root.append(el('p', { class: 'error small' }, `Analysis unavailable: ${error.message}`));
      }
    }
  }

  close() {
    clearTimeout(this.retryTimer);
    this.documentId = null;
    this.shown = null;
    clear(this.root);
  }

  /** A newer analysis from `analysis.completed`; older ones are ignored. */
  update(documentId, analysis) {
    if (documentId !== this.documentId || !analysis) return;
    if (this.shown && analysis.version < this.shown.version) return;
    this.render(analysis);
  }

  versionChanged(version) {
    this.currentVersion = version;
    if (this.shown) this.render(this.shown);
  }

  render(analysis) {
    this.shown = analysis;
    const terms = Array.isArray(analysis.topTerms) ? analysis.topTerms : [];
    const top = Math.max(...terms.map((t) => t.weight), 0) || 1;
    const stale = this.currentVersion > analysis.version;
    clear(this.root).append(
      el('dl', { class: 'stats' },
        el('div', {}, el('dt', {}, 'Words'), el('dd', { id: 'analysis-words' }, Number(analysis.wordCount).toLocaleString())),
        el('div', {}, el('dt', {}, 'Reading time'), el('dd', {}, readingTime(Number(analysis.readingTimeSeconds)))),
        el('div', { class: 'language' }, el('dt', {}, 'Language'), el('dd', {}, languageName(analysis.language))),
      ),
      terms.length
        ? el('div', {},
            el('h3', {}, 'Top terms'),
            el('ol', { class: 'terms' }, terms.map((t) => {
              const bar = el('span', { class: 'bar', 'aria-hidden': 'true' });
              bar.style.setProperty('--weight', String(Math.max(0.04, t.weight / top)));
              return el('li', {}, el('span', { class: 'term' }, t.term), bar,
                el('span', { class: 'visually-hidden' }, `weight ${t.weight.toFixed(3)}`));
            })))
        : el('p', { class: 'muted' }, 'No terms yet.'),
      el('p', { class: 'muted small' },
        `Analysed version ${analysis.version}`,
        stale ? ` · version ${this.currentVersion} is being analysed…` : ''),
    );
  }
}

const ACTIONS = { created: 'created', updated: 'changed', deleted: 'deleted' };

function describe(entry) {
  const fields = (entry.changedFields || []).join(', ');
  if (entry.action === 'updated' && fields) return `${entry.actor} changed ${fields}`;
  return `${entry.actor} ${ACTIONS[entry.action] ?? entry.action} the document`;
}

export class HistoryPanel {
  constructor(api, openVersion) {
    this.api = api;
    this.openVersion = openVersion;
    this.list = $('history-list');
    this.status = $('history-status');
    this.documentId = null;
    this.expected = 0;
    this.retries = 0;
    this.refreshSoon = debounce(() => this.refresh(), 600);
  }

  load(documentId, version) {
    this.documentId = documentId;
    this.expected = version;
    clear(this.list);
    this.status.textContent = 'Loading…';
    this.refresh();
  }

  close() {
    this.documentId = null;
    clear(this.list);
    this.status.textContent = '';
  }

  /** Keeps what is shown but asks the server nothing more (the document is gone). */
  stop() {
    this.documentId = null;
  }

  /** The document reached `version`; the audit trail follows shortly after. */
  changed(version) {
    this.expected = Math.max(this.expected, version);
    this.retries = 0;
    this.refreshSoon();
  }

  async refresh() {
    const documentId = this.documentId;
    if (!documentId) return;
    // Only the latest of overlapping refreshes renders.
    const seq = (this.seq = (this.seq ?? 0) + 1);
    const items = [];
    try {
      let cursor;
      for (let page = 0; page < 20; page++) {
        const answer = await this.api.history(documentId, cursor);
        items.push(...(answer?.items ?? []));
        cursor = answer?.nextCursor;
        if (!cursor) break;
      }
    } catch (error) {
      if (this.documentId !== documentId || seq !== this.seq) return;
      this.status.textContent = error instanceof ApiError && error.status === 404
        ? 'History is not available for this document.'
        : `History unavailable: ${error.message}`;
      this.status.classList.add('error');
      return;
    }
    if (this.documentId !== documentId || seq !== this.seq) return;
    this.status.classList.remove('error');
    this.render(items);
    const newest = items.reduce((v, e) => Math.max(v, e.version), 0);
    // The audit trail is written by the fan-out, a moment after the save: look again.
    if (newest < this.expected && this.retries < 8) {
      this.retries += 1;
      setTimeout(() => {
        if (this.documentId === documentId) this.refresh();
      }, 400 * this.retries);
    }
  }

  render(items) {
    clear(this.list);
    this.status.textContent = items.length ? '' : 'No history yet.';
    const sessions = groupSessions(items).reverse();
    sessions.forEach((session, index) => {
      const rows = [...session.entries].reverse().map((entry) => this.item(entry));
      if (!session.typing || session.entries.length < 3) {
        this.list.append(...rows);
        return;
      }
      // A typing session reads as one line; the newest, and short ones, stay open.
      const open = index === 0 || session.entries.length <= 10;
      this.list.append(el('li', { class: 'history-session', dataset: { first: String(session.first), last: String(session.last) } },
        el('details', { open },
          el('summary', {},
            el('span', { class: 'what' }, `${session.actor} typed: ${plural(session.entries.length, 'version')} (v${session.first}–v${session.last})`),
            el('span', { class: 'when' }, timeEl(session.from), ' – ', timeEl(session.to))),
          el('ol', { class: 'history-list history-session-items' }, rows))));
    });
  }

  item(entry) {
    return el('li', {},
      el('button', {
        type: 'button',
        class: 'history-item',
        dataset: { version: String(entry.version) },
        onclick: () => this.openVersion(entry.version),
      },
      el('span', { class: 'version' }, `v${entry.version}`),
      el('span', { class: 'what' }, describe(entry)),
      el('span', { class: 'when' }, timeEl(entry.at))));
  }
}

/** Fills the version dialog with one history entry and its detail. */
export function renderVersion(root, entry) {
  const detail = entry.detail || {};
  const parts = [
    el('p', { class: 'muted' }, `${describe(entry)} · ${fullTime(entry.at)}`),
  ];
  if (detail.title) {
    parts.push(el('h3', {}, 'Title'),
      el('p', { class: 'title-change' },
        detail.title.from == null ? '' : el('del', {}, detail.title.from),
        detail.title.from == null ? '' : ' → ',
        detail.title.to == null ? el('em', {}, '(removed)') : el('ins', {}, detail.title.to)));
  }
  if (Array.isArray(detail.collaborators) && detail.collaborators.length) {
    parts.push(el('h3', {}, 'Sharing'), el('ul', { class: 'collab-changes' },
      detail.collaborators.map((c) => el('li', {},
        `${c.user}: `,
        c.from == null ? `added as ${c.to}` : c.to == null ? `removed (was ${c.from})` : `${c.from} → ${c.to}`))));
  }
  if (typeof detail.bodyDiff === 'string' && detail.bodyDiff) {
    parts.push(el('h3', {}, 'Body'), diffView(detail.bodyDiff));
  }
  if (parts.length === 1) parts.push(el('p', {}, 'No content changes recorded for this version.'));
  clear(root).append(...parts);
}

function diffView(diff) {
  const pre = el('pre', { class: 'diff', tabindex: '0', 'aria-label': 'Changes to the body' });
  for (const line of diff.replace(/\n$/, '').split('\n')) {
    let cls = 'ctx';
    if (line.startsWith('+++') || line.startsWith('---')) cls = 'file';
    else if (line.startsWith('@@')) cls = 'hunk';
    else if (line.startsWith('+')) cls = 'add';
    else if (line.startsWith('-')) cls = 'del';
    pre.append(el('span', { class: cls }, line), '\n');
  }
  return pre;
}

export class SearchPanel {
  constructor(api, open) {
    this.api = api;
    this.open = open;
    this.section = $('search-results');
    this.list = $('search-list');
    this.status = $('search-status');
    this.more = $('search-more');
    this.input = $('search-input');
    this.query = '';
    this.cursor = null;
    this.controller = null;
    const run = debounce(() => this.search(this.input.value), 300);
    this.input.addEventListener('input', run);
    $('search-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.search(this.input.value);
    });
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && this.input.value) {
        event.preventDefault();
        this.reset();
      }
    });
    $('search-clear').addEventListener('click', () => {
      this.reset();
      this.input.focus();
    });
    this.more.addEventListener('click', () => this.fetch(true));
  }

  reset() {
    this.controller?.abort();
    this.input.value = '';
    this.query = '';
    show(this.section, false);
    clear(this.list);
  }

  search(raw) {
    const q = raw.trim();
    if (q === this.query && !this.section.hidden) return;
    this.query = q;
    this.cursor = null;
    if (!q) {
      this.reset();
      return;
    }
    clear(this.list);
    this.fetch(false);
  }

  async fetch(more) {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    show(this.section, true);
    this.status.classList.remove('error');
    this.status.textContent = 'Searching…';
    show(this.more, false);
    try {
      const answer = await this.api.search(this.query, more ? this.cursor : undefined, 10, controller.signal);
      if (controller !== this.controller) return;
      const results = answer?.results ?? [];
      this.cursor = answer?.nextCursor ?? null;
      for (const hit of results) {
        this.list.append(el('li', {},
          el('button', { type: 'button', class: 'result', onclick: () => this.open(hit.id) },
            el('span', { class: 'result-title' }, hit.title),
            el('span', { class: 'snippet' }, snippetNodes(hit.snippet ?? '')))));
      }
      const count = this.list.children.length;
      this.status.textContent = count
        ? `${plural(count, 'result')} for “${this.query}”`
        : `Nothing matches “${this.query}”.`;
      show(this.more, Boolean(this.cursor));
    } catch (error) {
      if (error?.name === 'AbortError' || controller !== this.controller) return;
      this.status.classList.add('error');
      this.status.textContent = error instanceof ApiError && error.status === 400
        ? `That search cannot be read: ${error.message}`
        : `Search is unavailable: ${error.message}`;
    }
  }
}
