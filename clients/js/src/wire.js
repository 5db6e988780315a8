// Small pure helpers: the WebSocket address, comment id order, a token's expiry, backoff.

const STREAM_ID = /^[A-Za-z0-9_-]{1,64}$/;
const COMMENT_ID = /^(\d+)-(\d+)$/;

/** The stream's WebSocket address (without query) from the server's base address. */
export function socketBase(url, streamId) {
  if (!STREAM_ID.test(String(streamId))) {
    throw new TypeError(`stream id ${JSON.stringify(streamId)}: 1 to 64 letters, digits, _ or -`);
  }
  let base;
  try {
    base = new URL(String(url));
  } catch {
    throw new TypeError(`${JSON.stringify(url)} is not a URL: give the server's base, ws://host:port`);
  }
  const schemes = { "ws:": "ws:", "wss:": "wss:", "http:": "ws:", "https:": "wss:" };
  if (!schemes[base.protocol]) {
    throw new TypeError(`${base.protocol} is not a WebSocket scheme: use ws(s):// or http(s)://`);
  }
  const path = base.pathname.replace(/\/+$/, "");
  return `${schemes[base.protocol]}//${base.host}${path}/v1/streams/${streamId}/ws`;
}

/** Orders two comment ids (`<ms>-<seq>`): negative, zero or positive. */
export function compareIds(a, b) {
  const x = COMMENT_ID.exec(a);
  const y = COMMENT_ID.exec(b);
  if (!x || !y) return a < b ? -1 : a > b ? 1 : 0;
  return Number(x[1]) - Number(y[1]) || Number(x[2]) - Number(y[2]);
}

/** The `exp` claim (Unix seconds) of a JWT, read without checking it; `null` if none. */
export function tokenExpiry(token) {
  try {
    const part = token.split(".")[1];
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const exp = JSON.parse(new TextDecoder().decode(bytes)).exp;
    return Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

/** Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^attempt)). */
export function backoffDelay(attempt, baseMs, capMs) {
  return Math.floor(Math.random() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30)));
}

/** A prefix for post refs, different for every client (a server remembers a user's refs for
 *  two minutes: a reloaded page counting from 1 again must not hit the old ones). */
export function refPrefix() {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}
