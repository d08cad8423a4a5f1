// Sign-in: a JWT taken from the URL fragment (`/#token=…`) or pasted, kept in
// localStorage so that one sign-in covers every tab of the browser: the other tabs hear
// of a new token (or a sign-out) through the `storage` event and follow it.

const KEY = 'docfan.token';

/** The claims of a JWT, without verifying it (the server does that on every call). */
export function decodeToken(token) {
  const parts = String(token).trim().split('.');
  if (parts.length !== 3) throw new Error('this is not a token (expected three dot-separated parts)');
  let claims;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, '='));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    claims = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error('this token cannot be read');
  }
  if (!claims || typeof claims.sub !== 'string' || claims.sub === '') {
    throw new Error('this token names no user');
  }
  return claims;
}

/** Takes `token` out of the fragment, leaving the rest (e.g. `doc=…`) in place. */
export function takeFragmentToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (token === null) return null;
  params.delete('token');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  return token;
}

export class Session {
  constructor(token) {
    const claims = decodeToken(token);
    this.token = token.trim();
    this.user = claims.sub;
    this.expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  }

  /** The stored session, expired or not; null when there is none. */
  static stored() {
    const stored = localStorage.getItem(KEY);
    if (!stored) return null;
    try {
      return new Session(stored);
    } catch {
      localStorage.removeItem(KEY);
      return null;
    }
  }

  /** The stored session while it is valid. */
  static restore() {
    const session = Session.stored();
    return session && !session.expired() ? session : null;
  }

  /**
   * Calls `onChange(token | null)` when another tab signs in, renews or signs out.
   * (`storage` events fire in the other tabs only, never in the one that wrote.)
   */
  static watch(onChange) {
    window.addEventListener('storage', (event) => {
      if (event.key === KEY || event.key === null) onChange(event.key === null ? null : event.newValue);
    });
  }

  save() {
    localStorage.setItem(KEY, this.token);
  }

  /** Swaps in a new token for the same user. */
  replace(token) {
    const next = new Session(token);
    if (next.user !== this.user) {
      throw new Error(`that token is for ${next.user}, not ${this.user}`);
    }
    if (next.expired()) throw new Error('that token has already expired');
    this.token = next.token;
    this.expiresAt = next.expiresAt;
    this.save();
  }

  expired(now = Date.now()) {
    return this.expiresAt !== null && this.expiresAt <= now;
  }

  /** Milliseconds left, or Infinity for a token without `exp`. */
  remaining(now = Date.now()) {
    return this.expiresAt === null ? Infinity : this.expiresAt - now;
  }

  static clear() {
    localStorage.removeItem(KEY);
  }
}
