// Where this client is in the stream, the client's half of the server's resume rule: the
// epoch of the last `init` and the newest comment id taken. It says what a resume sends,
// which comments are new, and what an `init` or a resync does to it.

import { compareIds } from "./wire.js";

export class Position {
  /** The stream's epoch from the last `init` (or the app's `epoch` option). */
  epoch = null;
  /** The id of the newest comment taken, `null` before any (or after a fresh start). */
  lastId = null;

  constructor(lastId = null, epoch = null) {
    this.lastId = lastId;
    this.epoch = epoch;
  }

  /** Puts a resume's `after=` and `epoch=` into `params` (nothing before any comment). */
  resume(params) {
    if (!this.lastId) return;
    params.set("after", this.lastId);
    if (this.epoch) params.set("epoch", this.epoch);
  }

  /** An `init` arrived: whether it resumed this position. If not, the position starts
   *  afresh (no comment taken yet); either way it is now in the `init`'s epoch. */
  init(frame) {
    const resumed = !!frame.resumed && this.lastId !== null;
    if (!resumed) this.lastId = null;
    this.epoch = frame.epoch ?? null;
    return resumed;
  }

  /** Whether `comment` is newer than every one taken; if so it is taken. */
  take(comment) {
    if (this.lastId !== null && compareIds(comment.id, this.lastId) <= 0) return false;
    this.lastId = comment.id;
    return true;
  }

  /** The server lost comments it cannot backfill (4002): start afresh. */
  forget() {
    this.lastId = null;
    this.epoch = null;
  }
}
