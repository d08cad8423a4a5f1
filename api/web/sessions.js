// Groups a document's history into typing sessions, so that hundreds of small versions
// from live editing read as a few lines: consecutive body-only updates by one person,
// each within `gapMs` of the one before, form one session. Anything else (a creation, a
// title or sharing change, a deletion, another person's edit, a pause) starts a new one.
// Pure: no DOM, so it is tested directly in node.

/** The longest pause within one typing session. */
export const SESSION_GAP_MS = 2 * 60 * 1000;

function isTyping(entry) {
  const fields = entry.changedFields || [];
  return entry.action === 'updated' && fields.length === 1 && fields[0] === 'body';
}

/**
 * `entries`: history entries oldest first (`version`, `actor`, `action`, `at`,
 * `changedFields`). Returns sessions oldest first, each `{actor, typing, entries,
 * first, last, from, to}` where `typing` tells a run of body edits from a single change.
 */
export function groupSessions(entries, gapMs = SESSION_GAP_MS) {
  const sessions = [];
  let current = null;
  for (const entry of entries) {
    const at = Date.parse(entry.at);
    const joins = current
      && current.typing
      && isTyping(entry)
      && entry.actor === current.actor
      && Number.isFinite(at)
      && at - Date.parse(current.to) <= gapMs
      && at >= Date.parse(current.to);
    if (joins) {
      current.entries.push(entry);
      current.last = entry.version;
      current.to = entry.at;
      continue;
    }
    current = {
      actor: entry.actor,
      typing: isTyping(entry),
      entries: [entry],
      first: entry.version,
      last: entry.version,
      from: entry.at,
      to: entry.at,
    };
    sessions.push(current);
  }
  return sessions;
}
