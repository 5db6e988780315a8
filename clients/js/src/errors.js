// The errors a `post()` or `refresh()` can reject with: one class per error code of the wire
// contract (the `code` of an `error` frame), plus the two the client itself decides
// (`Timeout`, `Closed`). Every class extends `DanmakuError`, so `instanceof` picks out a case
// and `error.code` names it either way.

/** Base class: `code` is the contract's error code (`rate_limited`, `too_long`, ...). */
export class DanmakuError extends Error {
  constructor(code, message, ref = null) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.ref = ref;
  }
}

/** Too many comments: wait `retryAfterMs` (the server's figure), until `retryAt` (epoch ms). */
export class RateLimited extends DanmakuError {
  constructor(message, retryAfterMs, ref = null) {
    super("rate_limited", message, ref);
    this.retryAfterMs = retryAfterMs;
    this.retryAt = Date.now() + retryAfterMs;
  }
}

/** The text is longer than the server's `DANMAKU_MAX_COMMENT_CHARS`. */
export class TooLong extends DanmakuError {
  constructor(message, ref = null) {
    super("too_long", message, ref);
  }
}

/** A moderator banned this user from the stream. */
export class Banned extends DanmakuError {
  constructor(message, ref = null) {
    super("banned", message, ref);
  }
}

/** The stream is in slow mode: wait `retryAfterMs` (until `retryAt`, epoch ms). */
export class SlowMode extends DanmakuError {
  constructor(message, retryAfterMs, ref = null) {
    super("slow_mode", message, ref);
    this.retryAfterMs = retryAfterMs;
    this.retryAt = Date.now() + retryAfterMs;
  }
}

/** Only some roles may post on the stream (its settings' `post_roles`), and not this user's. */
export class RoleRequired extends DanmakuError {
  constructor(message, ref = null) {
    super("role_required", message, ref);
  }
}

/** The comment holds a term the stream blocks (the message never names it). */
export class Blocked extends DanmakuError {
  constructor(message, ref = null) {
    super("blocked", message, ref);
  }
}

/** A `delete` of someone else's comment, without moderating the stream. */
export class Forbidden extends DanmakuError {
  constructor(message, ref = null) {
    super("forbidden", message, ref);
  }
}

/** A `delete` of a comment the stream does not retain. */
export class NotFound extends DanmakuError {
  constructor(message, ref = null) {
    super("not_found", message, ref);
  }
}

/** Anonymous, or the token expired (posting), or a refreshed token was refused. */
export class Unauthorized extends DanmakuError {
  constructor(message, ref = null) {
    super("unauthorized", message, ref);
  }
}

/** The server found the comment malformed: empty or invisible text, control characters. */
export class Invalid extends DanmakuError {
  constructor(message, ref = null) {
    super("invalid", message, ref);
  }
}

/** No answer within the timeout. A timed-out post may still have been published: post
 *  again with the same `ref` to learn its id without publishing it twice. */
export class Timeout extends DanmakuError {
  constructor(message, ref = null) {
    super("timeout", message, ref);
  }
}

/** The stream was closed (by `close()`, a ban, or a policy close) before an answer came. */
export class Closed extends DanmakuError {
  constructor(message, ref = null) {
    super("closed", message, ref);
  }
}

/** The error an `error` frame stands for. */
export function errorFromFrame(frame) {
  const message = typeof frame.message === "string" ? frame.message : String(frame.code);
  const ref = typeof frame.ref === "string" ? frame.ref : null;
  const retryAfterMs = Math.max(0, Number(frame.retry_after_ms) || 1000);
  switch (frame.code) {
    case "rate_limited":
      return new RateLimited(message, retryAfterMs, ref);
    case "slow_mode":
      return new SlowMode(message, retryAfterMs, ref);
    case "role_required":
      return new RoleRequired(message, ref);
    case "blocked":
      return new Blocked(message, ref);
    case "forbidden":
      return new Forbidden(message, ref);
    case "not_found":
      return new NotFound(message, ref);
    case "too_long":
      return new TooLong(message, ref);
    case "banned":
      return new Banned(message, ref);
    case "unauthorized":
      return new Unauthorized(message, ref);
    case "invalid":
      return new Invalid(message, ref);
    default:
      return new DanmakuError(String(frame.code), message, ref);
  }
}
