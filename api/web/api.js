// The REST client: bearer token on every call, `If-Match` for writes, and problem
// details (RFC 9457) turned into ApiError.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `the server answered ${status}`);
    this.status = status;
    this.problem = problem || {};
  }

  get type() {
    return this.problem.type || '';
  }
}

export class Api {
  /**
   * @param {() => string} token the current token
   * @param {(error: ApiError) => void} onUnauthorized called on any 401
   */
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, { body, ifMatch, contentType = 'application/json', signal } = {}) {
    const headers = { Authorization: `Bearer ${this.token()}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = contentType;
    if (ifMatch !== undefined) headers['If-Match'] = `"${ifMatch}"`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        signal,
      });
    } catch (cause) {
      if (cause?.name === 'AbortError') throw cause;
      throw new ApiError(0, { title: 'Network error', detail: 'the server cannot be reached' });
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const error = new ApiError(response.status, data);
      if (response.status === 401) this.onUnauthorized(error);
      throw error;
    }
    return data;
  }

  listDocuments(cursor, limit = 20) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    return this.request('GET', `/documents?${query}`);
  }

  getDocument(id) {
    return this.request('GET', `/documents/${encodeURIComponent(id)}`);
  }

  createDocument(input) {
    return this.request('POST', '/documents', { body: input });
  }

  replaceDocument(id, version, { title, body }) {
    return this.request('PUT', `/documents/${encodeURIComponent(id)}`, { body: { title, body }, ifMatch: version });
  }

  patchDocument(id, version, patch) {
    return this.request('PATCH', `/documents/${encodeURIComponent(id)}`, {
      body: patch,
      ifMatch: version,
      contentType: 'application/merge-patch+json',
    });
  }

  /** An operation on the body, made on version `baseVersion`; the server transforms it. */
  edit(id, baseVersion, ops) {
    return this.request('POST', `/documents/${encodeURIComponent(id)}/edits`, { body: { baseVersion, ops } });
  }

  /** The document exactly as it was at `version`. */
  version(id, version) {
    return this.request('GET', `/documents/${encodeURIComponent(id)}/versions/${version}`);
  }

  deleteDocument(id) {
    return this.request('DELETE', `/documents/${encodeURIComponent(id)}`);
  }

  search(q, cursor, limit = 10, signal) {
    const query = new URLSearchParams({ q, limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    return this.request('GET', `/search?${query}`, { signal });
  }

  history(id, cursor, limit = 100) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    return this.request('GET', `/documents/${encodeURIComponent(id)}/history?${query}`);
  }

  historyVersion(id, version) {
    return this.request('GET', `/documents/${encodeURIComponent(id)}/history/${version}`);
  }

  analysis(id) {
    return this.request('GET', `/documents/${encodeURIComponent(id)}/analysis`);
  }
}
