// Combining two edits of the same text: a line-based three-way merge (diff3) against
// the version both started from. Changes to different lines are combined; where both
// sides changed the same lines differently, both are kept between conflict markers.
// Typing together never needs it (the server transforms operations); the editor uses it
// only for a draft made on a version too old for the server to transform from, and
// only when the merge is clean.

/** Above this many line pairs the diff gives up on precision and treats the changed middle as one block. */
const MAX_CELLS = 4_000_000;

/**
 * The changes that turn `base` into `other`, as hunks: base lines [start, end) are
 * replaced by `lines`.
 */
export function diffLines(base, other) {
  let head = 0;
  while (head < base.length && head < other.length && base[head] === other[head]) head++;
  let tail = 0;
  while (tail < base.length - head && tail < other.length - head &&
         base[base.length - 1 - tail] === other[other.length - 1 - tail]) tail++;
  const a = base.slice(head, base.length - tail);
  const b = other.slice(head, other.length - tail);
  if (!a.length && !b.length) return [];
  if (!a.length || !b.length || a.length * b.length > MAX_CELLS) {
    return [{ start: head, end: head + a.length, lines: b }];
  }
  // Longest common subsequence, lengths from the end.
  const width = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * width + j] = a[i] === b[j]
        ? lcs[(i + 1) * width + j + 1] + 1
        : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  const hunks = [];
  let open = null;
  let i = 0;
  let j = 0;
  const flush = () => {
    if (open) hunks.push(open);
    open = null;
  };
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      flush();
      i++;
      j++;
    } else if (j < b.length && (i === a.length || lcs[i * width + j + 1] >= lcs[(i + 1) * width + j])) {
      open ??= { start: head + i, end: head + i, lines: [] };
      open.lines.push(b[j]);
      j++;
    } else {
      open ??= { start: head + i, end: head + i, lines: [] };
      open.end = head + i + 1;
      i++;
    }
  }
  flush();
  return hunks;
}

function applyHunks(base, hunks, start, end) {
  const out = [];
  let at = start;
  for (const hunk of hunks) {
    out.push(...base.slice(at, hunk.start), ...hunk.lines);
    at = hunk.end;
  }
  out.push(...base.slice(at, end));
  return out;
}

const same = (x, y) => x.length === y.length && x.every((line, i) => line === y[i]);

/**
 * Merges `mine` and `theirs`, both edits of `base`.
 * @returns {{text: string, conflicted: boolean}}
 */
export function mergeText(base, mine, theirs, theirsLabel = 'theirs') {
  if (mine === theirs) return { text: mine, conflicted: false };
  if (mine === base) return { text: theirs, conflicted: false };
  if (theirs === base) return { text: mine, conflicted: false };
  const b = base.split('\n');
  const changes = [
    ...diffLines(b, mine.split('\n')).map((h) => ({ ...h, side: 'mine' })),
    ...diffLines(b, theirs.split('\n')).map((h) => ({ ...h, side: 'theirs' })),
  ].sort((x, y) => x.start - y.start || x.end - y.end);
  const out = [];
  let conflicted = false;
  let at = 0;
  for (let k = 0; k < changes.length;) {
    const group = [changes[k]];
    const start = changes[k].start;
    let end = changes[k].end;
    k++;
    // Changes that overlap or touch belong together (as in diff3).
    while (k < changes.length && changes[k].start <= end) {
      end = Math.max(end, changes[k].end);
      group.push(changes[k]);
      k++;
    }
    out.push(...b.slice(at, start));
    const ours = applyHunks(b, group.filter((h) => h.side === 'mine'), start, end);
    const other = applyHunks(b, group.filter((h) => h.side === 'theirs'), start, end);
    const sides = new Set(group.map((h) => h.side));
    if (sides.size === 1) out.push(...(sides.has('mine') ? ours : other));
    else if (same(ours, other)) out.push(...ours);
    else {
      conflicted = true;
      out.push('<<<<<<< mine', ...ours, '=======', ...other, `>>>>>>> ${theirsLabel}`);
    }
    at = end;
  }
  out.push(...b.slice(at));
  return { text: out.join('\n'), conflicted };
}
