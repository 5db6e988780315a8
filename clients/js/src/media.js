// Media time (the contract's section 10): with a `mediaClock` (the player's current media
// time, Unix ms, e.g. from hls.js's program date time), comments come out when the clock
// reaches their moment (`media_ts`, else `ts`), in media order, instead of on arrival, so
// no viewer is spoiled at any player delay. A live comment waits at most `maxHoldMs` from
// its arrival (a paused or scrubbed player included) and at most `maxHeld` of them wait;
// past either it comes out at once, counted as late. Replayed comments (a VOD's chat) wait
// for the clock however far ahead they lie.

import { compareIds } from "./wire.js";

/** How often held comments are checked against the clock (±50 ms of their moment). */
const TICK_MS = 50;

export function mediaTime(comment) {
  return Number.isFinite(comment.media_ts) ? comment.media_ts : comment.ts;
}

function key(id, replay) {
  return `${replay ? "r" : "l"}${id}`;
}

function byMedia(a, b) {
  return mediaTime(a.comment) - mediaTime(b.comment) || compareIds(a.comment.id, b.comment.id);
}

export class MediaSchedule {
  #clock;
  #maxHoldMs;
  #maxHeld;
  #emit; // (comments, replay) => void: live or replayed comments, in media order
  #queue = []; // {comment, replay, deadline}, in media order
  #ids = new Set(); // `l<id>` for live entries, `r<id>` for replayed ones
  #timer = null;
  /** Live comments that came out before their moment (held too long, or too many held). */
  late = 0;

  constructor(clock, { maxHoldMs = 60000, maxHeld = 1000 } = {}, emit) {
    this.#clock = clock;
    this.#maxHoldMs = maxHoldMs;
    this.#maxHeld = maxHeld;
    this.#emit = emit;
  }

  /** The clock now (media ms). */
  now() {
    return Number(this.#clock());
  }

  /** Comments waiting for the clock. */
  get held() {
    return this.#queue.length;
  }

  /** Schedules comments: those already due (and live ones due too far ahead) come out now. */
  push(comments, { replay = false } = {}) {
    const now = this.now();
    const out = []; // {comment, replay}
    const deadline = Date.now() + this.#maxHoldMs;
    for (const comment of comments) {
      if (this.#ids.has(key(comment.id, replay))) continue;
      const wait = mediaTime(comment) - now;
      if (wait <= 0) {
        out.push({ comment, replay });
      } else if (!replay && wait > this.#maxHoldMs) {
        this.late += 1;
        out.push({ comment, replay });
      } else {
        this.#ids.add(key(comment.id, replay));
        this.#queue.push({ comment, replay, deadline });
      }
    }
    this.#queue.sort(byMedia);
    while (this.#liveHeld() > this.#maxHeld) {
      const i = this.#queue.findIndex((e) => !e.replay);
      const [entry] = this.#queue.splice(i, 1);
      this.#ids.delete(key(entry.comment.id, false));
      this.late += 1;
      out.push(entry);
    }
    this.#out(out.sort(byMedia));
    this.#arm();
  }

  /** Hands out entries (in media order): the live ones, then the replayed ones. */
  #out(entries) {
    for (const replay of [false, true]) {
      const comments = entries.filter((e) => e.replay === replay).map((e) => e.comment);
      if (comments.length) this.#emit(comments, replay);
    }
  }

  /** Deleted comments leave the queue. */
  drop(ids) {
    const gone = new Set(ids);
    this.#forget((e) => gone.has(e.comment.id));
  }

  /** Forgets the replayed comments still waiting (a new scrub replaces them, or live again). */
  clearReplay() {
    this.#forget((e) => e.replay);
  }

  /** Forgets the live comments still waiting (the stream started afresh). */
  clearLive() {
    this.#forget((e) => !e.replay);
  }

  #forget(which) {
    this.#queue = this.#queue.filter((e) => {
      if (!which(e)) return true;
      this.#ids.delete(key(e.comment.id, e.replay));
      return false;
    });
    this.#arm();
  }

  /** Stops the timer and forgets everything held. */
  stop() {
    clearInterval(this.#timer);
    this.#timer = null;
    this.#queue = [];
    this.#ids.clear();
  }

  #liveHeld() {
    return this.#queue.reduce((n, e) => n + (e.replay ? 0 : 1), 0);
  }

  #arm() {
    if (this.#queue.length && !this.#timer) {
      this.#timer = setInterval(() => this.#tick(), TICK_MS);
    } else if (!this.#queue.length && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  #tick() {
    const now = this.now();
    const wall = Date.now();
    const out = [];
    this.#queue = this.#queue.filter((e) => {
      const due = mediaTime(e.comment) <= now;
      const overdue = !e.replay && wall >= e.deadline; // the player stalled: let it out
      if (!due && !overdue) return true;
      if (!due) this.late += 1;
      this.#ids.delete(key(e.comment.id, e.replay));
      out.push(e);
      return false;
    });
    if (out.length) this.#out(out);
    this.#arm();
  }
}
