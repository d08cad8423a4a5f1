// Text operations on a document body, in the wire format of POST /documents/{id}/edits:
// an array whose components are a positive integer (keep that many characters), a
// non-empty string (insert it) or a negative integer (delete that many characters).
// What the components do not reach is kept. Offsets and lengths count Unicode code
// points, as the server does, never JavaScript's UTF-16 units: an emoji is one
// character here and two units in a string.
//
// Laid out as: code-point helpers; building and checking operations; apply; compose;
// transform (the server's tie rule: at one position the insert of the operation
// committed first goes first); diff; transformPosition for carets.

// Code points.

const isHigh = (unit) => unit >= 0xd800 && unit <= 0xdbff;
const isLow = (unit) => unit >= 0xdc00 && unit <= 0xdfff;

/** The number of code points in `text`. */
export function cpLength(text) {
  let n = text.length;
  for (let i = 1; i < text.length; i++) {
    if (isLow(text.charCodeAt(i)) && isHigh(text.charCodeAt(i - 1))) n--;
  }
  return n;
}

/**
 * The UTF-16 index `count` code points after UTF-16 index `from`, or -1 when the text
 * ends before that.
 */
export function advance(text, from, count) {
  let i = from;
  for (let k = 0; k < count; k++) {
    if (i >= text.length) return -1;
    i += isHigh(text.charCodeAt(i)) && isLow(text.charCodeAt(i + 1)) ? 2 : 1;
  }
  return i;
}

/** The UTF-16 index of code point `offset` (clamped to the text). */
export function utf16Index(text, offset) {
  const i = advance(text, 0, Math.max(0, offset));
  return i === -1 ? text.length : i;
}

/** The code-point offset of UTF-16 index `index`. */
export function cpIndex(text, index) {
  return cpLength(text.slice(0, index));
}

function cpSlice(text, start, end) {
  const from = utf16Index(text, start);
  return end === undefined ? text.slice(from) : text.slice(from, advance(text, from, end - start));
}

// Building and checking.

export const isRetain = (c) => typeof c === 'number' && c > 0;
export const isDelete = (c) => typeof c === 'number' && c < 0;
export const isInsert = (c) => typeof c === 'string';

/**
 * Appends one component to `ops`, merging it with the last one of its kind; an insert
 * next to a delete goes before it, so equal operations have one spelling.
 */
export function push(ops, c) {
  if (c === 0 || c === '' || c === undefined) return ops;
  const last = ops[ops.length - 1];
  if (isInsert(c)) {
    if (isInsert(last)) ops[ops.length - 1] = last + c;
    else if (isDelete(last)) {
      if (isInsert(ops[ops.length - 2])) ops[ops.length - 2] += c;
      else ops.splice(ops.length - 1, 0, c);
    } else ops.push(c);
  } else if (isRetain(c)) {
    if (isRetain(last)) ops[ops.length - 1] = last + c;
    else ops.push(c);
  } else if (isDelete(last)) {
    ops[ops.length - 1] = last + c;
  } else {
    ops.push(c);
  }
  return ops;
}

/** Throws unless `ops` is an operation in the wire format. */
export function check(ops) {
  if (!Array.isArray(ops)) throw new TypeError('an operation is an array');
  for (const c of ops) {
    const ok = (typeof c === 'string' && c !== '') || (Number.isSafeInteger(c) && c !== 0);
    if (!ok) throw new TypeError(`not an operation component: ${JSON.stringify(c)}`);
  }
  return ops;
}

/** The canonical spelling of `ops`: merged components, no trailing retain. */
export function normalize(ops) {
  const out = [];
  for (const c of ops) push(out, c);
  while (isRetain(out[out.length - 1])) out.pop();
  return out;
}

/** How many characters the operation reaches in the text it applies to. */
export function baseLength(ops) {
  let n = 0;
  for (const c of ops) if (!isInsert(c)) n += Math.abs(c);
  return n;
}

/** How many characters the reached part of the text has after the operation. */
export function targetLength(ops) {
  let n = 0;
  for (const c of ops) n += isInsert(c) ? cpLength(c) : isRetain(c) ? c : 0;
  return n;
}

/** True when the operation changes nothing. */
export function isNoop(ops) {
  return ops.every(isRetain);
}

// Apply.

/** The text after `ops`; throws when the operation does not fit the text. */
export function apply(text, ops) {
  let out = '';
  let at = 0;
  for (const c of ops) {
    if (isInsert(c)) {
      out += c;
      continue;
    }
    const next = advance(text, at, Math.abs(c));
    if (next === -1) throw new RangeError('the operation reaches past the end of the text');
    if (isRetain(c)) out += text.slice(at, next);
    at = next;
  }
  return out + text.slice(at);
}

// Compose and transform walk two operations component by component, splitting the
// longer one; `Walker` hands out the pieces.

class Walker {
  constructor(ops) {
    this.ops = ops;
    this.i = 0;
    this.head = ops[0];
  }

  /** The current component's length in characters (inserts: their code points). */
  length() {
    return isInsert(this.head) ? cpLength(this.head) : Math.abs(this.head);
  }

  /** Takes `n` characters of the current component (all of it by default). */
  take(n = Infinity) {
    const c = this.head;
    const len = this.length();
    if (n >= len) {
      this.i += 1;
      this.head = this.ops[this.i];
      return c;
    }
    if (isInsert(c)) {
      this.head = cpSlice(c, n);
      return cpSlice(c, 0, n);
    }
    if (isRetain(c)) {
      this.head = c - n;
      return n;
    }
    this.head = c + n;
    return -n;
  }
}

function padded(ops, length) {
  const gap = length - baseLength(ops);
  return gap > 0 ? push([...ops], gap) : ops;
}

/**
 * One operation with the effect of `a` then `b`. Trailing text neither reaches is kept,
 * so the two need not spell out the whole document.
 */
export function compose(a, b) {
  const aTarget = targetLength(a);
  const bBase = baseLength(b);
  if (aTarget < bBase) a = push([...a], bBase - aTarget);
  else if (bBase < aTarget) b = push([...b], aTarget - bBase);
  const x = new Walker(a);
  const y = new Walker(b);
  const out = [];
  for (;;) {
    if (x.head === undefined && y.head === undefined) break;
    if (isDelete(x.head)) {
      push(out, x.take());
      continue;
    }
    if (isInsert(y.head)) {
      push(out, y.take());
      continue;
    }
    if (x.head === undefined || y.head === undefined) throw new RangeError('compose: the operations do not line up');
    const n = Math.min(x.length(), y.length());
    const left = x.take(n);
    const right = y.take(n);
    if (isRetain(right)) push(out, left); // keep what `a` left: its retain or its insert
    else if (isRetain(left)) push(out, right); // `b` deletes kept text
    // else `b` deletes what `a` inserted: nothing remains
  }
  return normalize(out);
}

/**
 * Both operations apply to the same text; returns [a′, b′] with
 * apply(apply(t, a), b′) === apply(apply(t, b), a′). `a` is the operation committed
 * first: where both insert at one position, its insert comes first.
 */
export function transform(a, b) {
  const length = Math.max(baseLength(a), baseLength(b));
  const x = new Walker(padded(a, length));
  const y = new Walker(padded(b, length));
  const aOut = [];
  const bOut = [];
  for (;;) {
    if (x.head === undefined && y.head === undefined) break;
    if (isInsert(x.head)) {
      const ins = x.take();
      push(aOut, ins);
      push(bOut, cpLength(ins));
      continue;
    }
    if (isInsert(y.head)) {
      const ins = y.take();
      push(aOut, cpLength(ins));
      push(bOut, ins);
      continue;
    }
    if (x.head === undefined || y.head === undefined) throw new RangeError('transform: the operations do not line up');
    const n = Math.min(x.length(), y.length());
    const left = x.take(n);
    const right = y.take(n);
    if (isRetain(left) && isRetain(right)) {
      push(aOut, n);
      push(bOut, n);
    } else if (isDelete(left) && isRetain(right)) {
      push(aOut, -n);
    } else if (isRetain(left) && isDelete(right)) {
      push(bOut, -n);
    }
    // both delete the same text: neither needs to any more
  }
  return [normalize(aOut), normalize(bOut)];
}

// Diff.

/**
 * An operation that turns `before` into `after`: the common start and end are kept,
 * the middle replaced. `caret` (a UTF-16 index in `after`, optional) settles where an
 * ambiguous change goes, e.g. which of "aa" → "aaa" was typed: the one before the caret.
 */
export function diff(before, after, caret) {
  if (before === after) return [];
  const max = Math.min(before.length, after.length);
  let start = 0;
  while (start < max && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  if (caret !== undefined) {
    const grown = after.length - before.length;
    if (grown > 0) start = Math.min(start, Math.max(0, caret - grown));
    else start = Math.min(start, Math.max(0, caret));
  }
  let end = 0;
  while (end < max - start && before.charCodeAt(before.length - 1 - end) === after.charCodeAt(after.length - 1 - end)) end++;
  // Never split a surrogate pair: move the cut points outwards.
  if (start > 0 && isLow(before.charCodeAt(start)) && isHigh(before.charCodeAt(start - 1))) start--;
  if (start > 0 && isLow(after.charCodeAt(start)) && isHigh(after.charCodeAt(start - 1))) start--;
  const fixEnd = (text) => {
    const cut = text.length - end;
    return cut < text.length && cut > start && isLow(text.charCodeAt(cut)) && isHigh(text.charCodeAt(cut - 1));
  };
  while (end > 0 && (fixEnd(before) || fixEnd(after))) end--;
  const ops = [];
  push(ops, cpLength(before.slice(0, start)));
  push(ops, after.slice(start, after.length - end));
  push(ops, -cpLength(before.slice(start, before.length - end)));
  return normalize(ops);
}

// Carets.

/**
 * Where code-point offset `offset` lands after `ops`. An insert exactly at the offset
 * pushes it along unless `stickBefore`.
 */
export function transformPosition(offset, ops, stickBefore = false) {
  let remaining = offset;
  let result = offset;
  for (const c of ops) {
    if (isRetain(c)) {
      remaining -= c;
      if (remaining < 0) break;
    } else if (isInsert(c)) {
      if (remaining > 0 || !stickBefore) result += cpLength(c);
    } else {
      result -= Math.min(remaining, -c);
      remaining += c;
      if (remaining < 0) break;
    }
  }
  return result;
}
