// The WebSocket connection: one per signed-in tab, reconnecting with exponential
// backoff; each subscription is renewed with `sinceVersion` so missed changes are
// replayed after a reconnect.

const PING_EVERY_MS = 25_000;
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 30_000;

export class LiveConnection extends EventTarget {
  /** @param {() => string} token */
  constructor(token) {
    super();
    this.token = token;
    this.socket = null;
    this.attempt = 0;
    this.stopped = true;
    this.retryTimer = null;
    this.pingTimer = null;
    /** documentId → () => last version seen */
    this.subscriptions = new Map();
    this.status = { state: 'offline' };
    this.onOnline = () => this.reconnectNow();
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    this.open();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, 'signed out');
    this.setStatus({ state: 'offline' });
  }

  /** Follows `documentId`; `since` returns the last version the page has. */
  subscribe(documentId, since) {
    this.subscriptions.set(documentId, since);
    this.sendSubscribe(documentId);
  }

  unsubscribe(documentId) {
    if (!this.subscriptions.delete(documentId)) return;
    this.send({ action: 'unsubscribe', documentId });
  }

  /** Asks again, from the version the page has now: the server replays what is missing. */
  resubscribe(documentId) {
    if (this.subscriptions.has(documentId)) this.sendSubscribe(documentId);
  }

  /** Where this person's caret is (code points), or null; false when not connected. */
  presence(documentId, cursor) {
    return this.send({ action: 'presence', documentId, cursor });
  }

  /** Replaces the connection's token before the old one expires. */
  refreshToken(token) {
    this.send({ action: 'auth', token });
  }

  reconnectNow() {
    if (this.stopped || this.socket) return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    this.open();
  }

  sendSubscribe(documentId) {
    const since = this.subscriptions.get(documentId)?.();
    const frame = { action: 'subscribe', documentId };
    if (Number.isInteger(since) && since > 0) frame.sinceVersion = since;
    this.send(frame);
  }

  send(frame) {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  setStatus(status) {
    this.status = status;
    this.dispatchEvent(new CustomEvent('status', { detail: status }));
  }

  open() {
    if (this.stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/ws?token=${encodeURIComponent(this.token())}`;
    this.setStatus({ state: 'connecting' });
    let socket;
    try {
      socket = new WebSocket(url);
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
    socket.addEventListener('open', () => {
      if (this.socket !== socket) return;
      this.attempt = 0;
      this.setStatus({ state: 'live' });
      for (const documentId of this.subscriptions.keys()) this.sendSubscribe(documentId);
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ action: 'ping' }), PING_EVERY_MS);
    });
    socket.addEventListener('message', (event) => {
      if (this.socket !== socket || typeof event.data !== 'string') return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!frame || typeof frame.type !== 'string' || frame.type === 'pong') return;
      this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
    });
    socket.addEventListener('close', () => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearInterval(this.pingTimer);
      this.retry();
    });
  }

  retry() {
    if (this.stopped) return;
    const ceiling = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** this.attempt);
    // Full jitter keeps many tabs from reconnecting in step after a restart.
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt += 1;
    this.setStatus({ state: 'reconnecting', at: Date.now() + delay, attempt: this.attempt });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }
}
