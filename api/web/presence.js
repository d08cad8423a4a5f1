// Who else has the document open, and where their caret and selection are. Carets are
// drawn in a mirror of the textarea: a div behind nothing, above the text, with the same
// box, font and wrapping, holding the same text in transparent ink with marks where
// the others are. Offsets are code points, as on the wire; between two presence frames
// a cursor is carried along by every edit, so it stays on the same character.

import { el, clear } from './dom.js';
import { transformPosition, utf16Index, cpLength } from './operation.js';

/** A stable colour per user. */
export function colorOf(user) {
  let hash = 0;
  for (const ch of user) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 70% 42%)`;
}

/** "alice" → "A", "mary-jane" → "MJ", "bob.smith" → "BS". */
export function initials(user) {
  const parts = user.split(/[\s._@-]+/).filter(Boolean);
  const letters = (parts.length > 1 ? parts.slice(0, 2).map((p) => [...p][0]) : [...(parts[0] || user)].slice(0, 1));
  return letters.join('').toUpperCase();
}

/** The box and text properties the mirror copies from the textarea. */
const MIRRORED = [
  'boxSizing', 'width', 'paddingTop', 'paddingRight', 'paddingBottom', 'paddingLeft',
  'borderTopWidth', 'borderRightWidth', 'borderBottomWidth', 'borderLeftWidth',
  'fontFamily', 'fontSize', 'fontWeight', 'fontStyle', 'lineHeight', 'letterSpacing',
  'wordSpacing', 'textIndent', 'tabSize', 'textTransform',
];

export class Presence {
  /**
   * @param {HTMLTextAreaElement} textarea
   * @param {HTMLElement} overlay the mirror, positioned over the textarea
   * @param {HTMLElement} list where the people are listed
   */
  constructor(textarea, overlay, list) {
    this.textarea = textarea;
    this.overlay = overlay;
    this.list = list;
    /** user → {anchor, head} | null */
    this.people = new Map();
    this.frame = 0;
    textarea.addEventListener('scroll', () => this.syncScroll());
    if (typeof ResizeObserver === 'function') new ResizeObserver(() => this.renderSoon()).observe(textarea);
  }

  set(user, cursor) {
    const valid = cursor && Number.isInteger(cursor.anchor) && Number.isInteger(cursor.head);
    this.people.set(user, valid ? { anchor: cursor.anchor, head: cursor.head } : null);
    this.renderSoon();
  }

  remove(user) {
    if (this.people.delete(user)) this.renderSoon();
  }

  clear() {
    this.people.clear();
    this.renderSoon();
  }

  /** The text changed by `ops`: everyone's cursor moves with it. */
  transform(ops) {
    if (!ops.length) return;
    for (const [user, cursor] of this.people) {
      if (!cursor) continue;
      this.people.set(user, { anchor: transformPosition(cursor.anchor, ops), head: transformPosition(cursor.head, ops) });
    }
    this.renderSoon();
  }

  renderSoon() {
    if (this.frame) return;
    const run = () => {
      this.frame = 0;
      this.render();
    };
    this.frame = typeof requestAnimationFrame === 'function' ? requestAnimationFrame(run) : setTimeout(run, 16);
  }

  syncScroll() {
    this.overlay.scrollTop = this.textarea.scrollTop;
    this.overlay.scrollLeft = this.textarea.scrollLeft;
  }

  render() {
    this.renderList();
    this.renderCarets();
  }

  renderList() {
    clear(this.list);
    const users = [...this.people.keys()].sort();
    this.list.hidden = users.length === 0;
    if (!users.length) return;
    this.list.setAttribute('aria-label', `Also here: ${users.join(', ')}`);
    for (const user of users) {
      const avatar = el('li', { class: 'avatar', title: `${user} is here`, dataset: { user } }, initials(user));
      avatar.style.setProperty('--who', colorOf(user));
      this.list.append(avatar);
    }
  }

  renderCarets() {
    const text = this.textarea.value;
    const style = getComputedStyle(this.textarea);
    for (const property of MIRRORED) this.overlay.style[property] = style[property];
    // The textarea's scrollbar narrows its text; the mirror has none.
    const scrollbar = this.textarea.offsetWidth - this.textarea.clientWidth -
      parseFloat(style.borderLeftWidth) - parseFloat(style.borderRightWidth);
    this.overlay.style.paddingRight = `${parseFloat(style.paddingRight) + Math.max(0, scrollbar)}px`;
    this.overlay.style.height = `${this.textarea.offsetHeight}px`;

    const length = cpLength(text);
    const clamp = (n) => Math.max(0, Math.min(length, n));
    const marks = [];
    for (const [user, cursor] of this.people) {
      if (!cursor) continue;
      const anchor = clamp(cursor.anchor);
      const head = clamp(cursor.head);
      marks.push({ user, from: Math.min(anchor, head), to: Math.max(anchor, head), head });
    }
    // Cut the text at every mark's ends; each piece is selected by whoever covers it.
    const cuts = new Set([0, length]);
    for (const m of marks) {
      cuts.add(m.from);
      cuts.add(m.to);
      cuts.add(m.head);
    }
    const points = [...cuts].sort((a, b) => a - b);
    const nodes = [];
    for (let i = 0; i < points.length; i++) {
      const at = points[i];
      for (const m of marks) {
        if (m.head !== at) continue;
        const caret = el('span', { class: 'remote-caret', dataset: { user: m.user } },
          el('span', { class: 'remote-caret-label' }, m.user));
        caret.style.setProperty('--who', colorOf(m.user));
        nodes.push(caret);
      }
      if (i === points.length - 1) break;
      const next = points[i + 1];
      const piece = text.slice(utf16Index(text, at), utf16Index(text, next));
      const owner = marks.find((m) => m.from <= at && next <= m.to && m.from < m.to);
      if (owner) {
        const span = el('span', { class: 'remote-selection', dataset: { user: owner.user } }, piece);
        span.style.setProperty('--who', colorOf(owner.user));
        nodes.push(span);
      } else {
        nodes.push(document.createTextNode(piece));
      }
    }
    // A final newline needs something after it to take up its line.
    nodes.push(document.createTextNode('\u200b'));
    clear(this.overlay).append(...nodes);
    this.syncScroll();
  }
}
