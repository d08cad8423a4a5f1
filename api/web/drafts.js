// Drafts: what was typed in a document and not committed yet, kept in localStorage per
// user and document so that a reload, a closed tab or an expired sign-in loses nothing.
// A draft is a list of edits, each with the version it was made on; when the document
// is opened again they are sent as they are and the server transforms them past
// whatever happened meanwhile. The text is kept too, for the rare base too old to
// transform from.

const PREFIX = 'docfan.draft';

const keyOf = (user, documentId) => `${PREFIX}:${user}:${documentId}`;

/** @returns {{pieces: Array<{base: number, ops: Array}>, text: string, savedAt: string} | null} */
export function readDraft(user, documentId) {
  try {
    const draft = JSON.parse(localStorage.getItem(keyOf(user, documentId)) ?? 'null');
    return draft && Array.isArray(draft.pieces) && draft.pieces.length ? draft : null;
  } catch {
    return null;
  }
}

export function writeDraft(user, documentId, pieces, text) {
  const key = keyOf(user, documentId);
  try {
    if (pieces.length) localStorage.setItem(key, JSON.stringify({ pieces, text, savedAt: new Date().toISOString() }));
    else localStorage.removeItem(key);
  } catch {
    // Storage full or refused: the edits are still on their way to the server.
  }
}

export function dropDraft(user, documentId) {
  localStorage.removeItem(keyOf(user, documentId));
}
