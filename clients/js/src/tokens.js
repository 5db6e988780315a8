// The connection's token: a fixed one, or one `getToken` supplies and renews. A token is due
// for renewal `refreshBeforeMs` before its `exp` (read from the JWT, unverified), or at half
// its life when that is sooner; after a failed handshake the next connection asks anew.

import { tokenExpiry } from "./wire.js";

export class Tokens {
  #getToken;
  #beforeMs;
  #token;
  #exp; // Unix seconds, or null
  #at = 0; // when the token was had (ms)
  #suspect = false;

  constructor(token, getToken, refreshBeforeMs) {
    if (token != null && getToken != null) throw new TypeError("give token or getToken, not both");
    if (getToken != null && typeof getToken !== "function") {
      throw new TypeError("getToken must be a function returning a token (or a promise of one)");
    }
    this.#getToken = getToken ?? null;
    this.#beforeMs = refreshBeforeMs;
    this.take(token ?? null);
  }

  /** The token in use (null: anonymous). */
  get token() {
    return this.#token;
  }

  /** Its `exp` in Unix seconds, or null. */
  get exp() {
    return this.#exp;
  }

  /** Whether tokens come from getToken (and can be renewed). */
  get renewable() {
    return this.#getToken !== null;
  }

  /** Whether posting may work: a token, or a getToken that may supply one. */
  get mayPost() {
    return this.#token !== null || this.#getToken !== null;
  }

  /** The token for a new connection: the current one unless due or suspect. */
  async forConnect() {
    const fresh = this.#token && !this.#suspect && (this.#exp === null || this.dueInMs() > 0);
    if (this.#getToken && !fresh) this.take(await this.#getToken());
    this.#suspect = false;
    return this.#token;
  }

  /** A new token from getToken (for an in-band refresh). */
  async next() {
    if (!this.#getToken) throw new TypeError("refresh() without a token needs the getToken option");
    return this.#getToken();
  }

  /** Makes `token` the one in use; `exp` overrides the token's own claim (the server's word). */
  take(token, exp) {
    this.#token = token || null;
    this.#exp = Number.isFinite(exp) ? exp : this.#token ? tokenExpiry(this.#token) : null;
    this.#at = Date.now();
  }

  /** A handshake failed: the token may be why. */
  suspect() {
    this.#suspect = true;
  }

  /** Milliseconds until the token is due for renewal (negative: overdue; Infinity: never). */
  dueInMs() {
    if (this.#exp === null) return Infinity;
    const lifetime = this.#exp * 1000 - this.#at;
    const margin = Math.max(0, Math.min(this.#beforeMs, lifetime / 2));
    return this.#exp * 1000 - margin - Date.now();
  }
}
