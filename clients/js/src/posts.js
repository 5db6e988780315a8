// Posts waiting for their answer, by `ref`: each resolves with the `ack`'s id or rejects with
// the `error` for its ref, a `Timeout`, or whatever ends the stream; until then it is resent
// (same ref, so the server publishes it once) on every new connection.

import { Timeout, TooLong } from "./errors.js";
import { refPrefix } from "./wire.js";

/** The server's limit on a client frame (it closes the connection with 1009 beyond it). */
const MAX_FRAME_BYTES = 4096;

export class Posts {
  #waiting = new Map(); // ref -> {text, resolve, reject, timer}
  #prefix = refPrefix();
  #seq = 0;

  /** The number of posts not yet answered. */
  get size() {
    return this.#waiting.size;
  }

  /** A promise for the post's id; `send(frame)` is tried now (it may not be connected). */
  add(text, { timeoutMs, ref }, send) {
    ref = ref ?? `${this.#prefix}-${++this.#seq}`;
    if (this.#waiting.has(ref)) return Promise.reject(new TypeError(`ref ${ref} is already waiting`));
    const frame = { type: "comment", text, ref };
    // The server closes a connection (1009) for a frame over 4 KiB: refuse it here instead.
    const bytes = new TextEncoder().encode(JSON.stringify(frame)).length;
    if (bytes > MAX_FRAME_BYTES) {
      return Promise.reject(new TooLong(`${bytes} bytes: a comment frame may have at most ${MAX_FRAME_BYTES}`, ref));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#settle(ref, "reject", new Timeout(`no answer within ${timeoutMs} ms`, ref));
      }, timeoutMs);
      this.#waiting.set(ref, { frame, resolve, reject, timer });
      send(frame);
    });
  }

  /** Sends every waiting post again, oldest first. */
  resend(send) {
    for (const post of this.#waiting.values()) send(post.frame);
  }

  /** An `ack`: resolves its post. */
  acked(ref, id) {
    this.#settle(ref, "resolve", id);
  }

  /** An `error` with a ref: rejects its post; false if no post waits for that ref. */
  refused(error) {
    return error.ref !== null && this.#settle(error.ref, "reject", error);
  }

  /** Rejects every waiting post with `makeError(ref)`. */
  rejectAll(makeError) {
    for (const ref of [...this.#waiting.keys()]) this.#settle(ref, "reject", makeError(ref));
  }

  #settle(ref, how, value) {
    const post = this.#waiting.get(ref);
    if (!post) return false;
    clearTimeout(post.timer);
    this.#waiting.delete(ref);
    post[how](value);
    return true;
  }
}
