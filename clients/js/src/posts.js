// Posts (and deletes) waiting for their answer, by `ref`: each resolves with the `ack`'s id
// (a held post with `{held: true, id}`) or rejects with the `error` for its ref, a `Timeout`,
// or whatever ends the stream; until then it is resent (same ref, so the server publishes it
// once) on every new connection. A delete resent after a lost `ack` may find its comment
// gone already: `not_found` then resolves it.

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

  /** A promise for the post's id; `send(frame)` is tried now (it may not be connected).
   *  `fields`: the frame's own (`{type: "comment", text}` or `{type: "delete", id}`). */
  add(fields, { timeoutMs, ref }, send) {
    ref = ref ?? `${this.#prefix}-${++this.#seq}`;
    if (this.#waiting.has(ref)) return Promise.reject(new TypeError(`ref ${ref} is already waiting`));
    const frame = { ...fields, ref };
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
    for (const post of this.#waiting.values()) {
      post.resent = true;
      send(post.frame);
    }
  }

  /** An `ack`: resolves its post with the id, or `{held: true, id}` for a held comment. */
  acked(frame) {
    this.#settle(frame.ref, "resolve", frame.held ? { held: true, id: frame.id } : frame.id);
  }

  /** An `error` with a ref: rejects its post; false if no post waits for that ref. */
  refused(error) {
    const post = error.ref !== null && this.#waiting.get(error.ref);
    if (!post) return false;
    if (post.frame.type === "delete" && post.resent && error.code === "not_found") {
      return this.#settle(error.ref, "resolve", post.frame.id); // deleted before the reconnect
    }
    return this.#settle(error.ref, "reject", error);
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
