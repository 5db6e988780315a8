// danmaku-client: one stream's live comments over one WebSocket, with the details of the wire
// contract handled: resume with `after=`/`epoch=` (no comment twice, none out of order),
// full-jitter backoff, `reconnect` hints, close codes, posts matched to their `ack` by `ref`
// and resent with the same `ref` across reconnects, in-band token refresh before `exp`; the
// stream's settings (slow mode, roles, pin), comments held for review, deleting one's own;
// with a `mediaClock`, comments shown at the media moment they are about, and a VOD's chat
// replayed on the same clock.
// No dependencies; runs wherever a WHATWG `WebSocket` exists (browsers, Node >= 22) or one is
// passed in (`ws` on older Node).

import { Banned, Closed, DanmakuError, Timeout, Unauthorized, errorFromFrame } from "./errors.js";
import { Posts } from "./posts.js";
import { Tokens } from "./tokens.js";
import { Position } from "./position.js";
import { MediaSchedule, mediaTime } from "./media.js";
import { backoffDelay, socketBase } from "./wire.js";

export * from "./errors.js";
export { compareIds } from "./wire.js";

const DEFAULTS = {
  maxHoldMs: 60000,
  maxHeld: 1000,
  backoffBaseMs: 500,
  backoffCapMs: 30000,
  postTimeoutMs: 10000,
  heartbeatMs: 20000,
  refreshBeforeMs: 60000,
};

/** The widest window one replay request may ask for, and media time's window around a
 *  post (the contract's section 10). */
const REPLAY_WINDOW_MS = 600000;
const MEDIA_BEHIND_MS = 120000;
const MEDIA_AHEAD_MS = 2000;

/** Close codes after which reconnecting cannot help: the reason the stream stops. */
const FINAL_CLOSES = { 4003: "banned", 1008: "policy", 1009: "too_big", 1002: "protocol", 1007: "bad_data" };

/** Opens `streamId` on the server at `url` (`ws(s)://host:port`, or `http(s)://`). */
export function connect(url, streamId, options = {}) {
  return new Stream(url, streamId, options);
}

export class Stream {
  #base;
  #opts;
  #WebSocket;
  #listeners = new Map();
  #ws = null;
  #gen = 0; // bumps with every socket: events of an older one are ignored
  #live = false; // the current socket has had its `init`
  #wanted = true; // false once closed: nothing reconnects
  #attempt = 0; // failed attempts since the last `init`
  #timer = null; // the pending reconnect
  #heartbeat = null;
  #lastHeard = 0;
  #tokens;
  #refreshTimer = null;
  #refreshing = null; // {token, resolve, reject, timer} while a `refresh` frame waits
  #refreshChain = Promise.resolve();
  #posts = new Posts();
  #maxRate;
  #media = null; // the media schedule, with a mediaClock
  #replayGen = 0; // bumps with every replay that replaces: an older answer is dropped

  #position;
  /** The viewer count last heard. */
  viewerCount = null;
  /** The stream's settings last heard (`{slow_mode_ms, post_roles, pinned}`), from `init` on. */
  settings = null;
  /** `connecting`, `resuming`, `live`, `reconnecting` or `closed`. */
  state = "connecting";

  constructor(url, streamId, options = {}) {
    this.#base = socketBase(url, streamId);
    this.streamId = streamId;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WebSocket !== "function") {
      throw new TypeError("no WebSocket here: pass options.WebSocket (e.g. the ws package's) on Node < 22");
    }
    this.#opts = { ...DEFAULTS, ...options };
    this.#tokens = new Tokens(options.token, options.getToken, this.#opts.refreshBeforeMs);
    this.#maxRate = options.maxRate ?? null;
    this.#position = new Position(options.after ?? null, options.epoch ?? null);
    if (options.mediaClock !== undefined) {
      if (typeof options.mediaClock !== "function") throw new TypeError("mediaClock is a function returning media ms");
      const limits = { maxHoldMs: this.#opts.maxHoldMs, maxHeld: this.#opts.maxHeld };
      this.#media = new MediaSchedule(options.mediaClock, limits, (comments, replay) =>
        this.#emit("comments", { comments, skipped: 0, backlog: false, replay }),
      );
    }
    queueMicrotask(() => this.#open());
  }

  /** The id of the newest comment delivered, `null` before any (or after a fresh start). */
  get lastId() {
    return this.#position.lastId;
  }

  /** The stream's epoch from the last `init`. */
  get epoch() {
    return this.#position.epoch;
  }

  // === events ===

  /** Calls `listener` for every `event`; returns a function that removes it. */
  on(event, listener) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) {
    this.#listeners.get(event)?.delete(listener);
  }

  #emit(event, payload) {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) {
      try {
        listener(payload);
      } catch (error) {
        // A listener's bug must not break the connection's bookkeeping: report it apart.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  #setState(state, details = {}) {
    this.state = state;
    this.#emit("state", { state, ...details });
  }

  // === connecting ===

  async #open() {
    if (!this.#wanted) return;
    if (this.#ws) this.#dropSocket(1000, "replaced"); // never two sockets at once
    const gen = ++this.#gen;
    let token;
    try {
      token = await this.#tokens.forConnect();
    } catch (error) {
      if (gen !== this.#gen || !this.#wanted) return;
      this.#emit("error", new Unauthorized(`getToken failed: ${error?.message ?? error}`));
      this.#schedule("getToken failed");
      return;
    }
    if (gen !== this.#gen || !this.#wanted) return;
    const params = new URLSearchParams();
    if (token) params.set("access_token", token);
    if (this.#maxRate) params.set("max_rate", String(this.#maxRate));
    this.#position.resume(params);
    const query = params.toString();
    const url = `${this.#base}${query ? `?${query}` : ""}`;
    this.#setState(this.lastId ? "resuming" : "connecting", {
      url: url.replace(/access_token=[^&]*/, "access_token=…"),
      after: this.lastId,
    });
    let ws;
    try {
      ws = new this.#WebSocket(url);
    } catch (error) {
      this.#schedule(`could not open a WebSocket: ${error?.message ?? error}`);
      return;
    }
    this.#ws = ws;
    this.#live = false;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (event) => {
      if (gen === this.#gen) this.#onMessage(event.data);
    };
    ws.onerror = () => {}; // onclose follows and decides
    ws.onclose = (event) => {
      if (gen === this.#gen) this.#onClose(event.code, event.reason, opened);
    };
  }

  #onClose(code, reason, opened) {
    this.#dropSocket();
    if (!this.#wanted) return;
    const final = FINAL_CLOSES[code];
    if (final) {
      this.#finish(final, code, reason || `closed with ${code}`);
      return;
    }
    if (code === 4002) {
      // Resync: the server lost comments it cannot backfill. Start afresh (a new `init`,
      // and `reset` tells the app to empty its list).
      this.#position.forget();
    }
    if (!opened) this.#tokens.suspect();
    this.#schedule(opened ? `closed (${code}${reason ? `: ${reason}` : ""})` : "could not connect", undefined, code);
  }

  /** Lets the current socket go; its events no longer count. */
  #dropSocket(code = 1000, reason = "") {
    const ws = this.#ws;
    this.#ws = null;
    this.#live = false;
    this.#gen += 1;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#refreshTimer);
    this.#heartbeat = null;
    this.#refreshTimer = null;
    this.#failRefresh(new DanmakuError("not_connected", "the connection closed before the refresh was answered"));
    if (ws && ws.readyState <= 1) {
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
  }

  #schedule(reason, delayMs, code) {
    if (!this.#wanted) return;
    clearTimeout(this.#timer);
    const inMs = delayMs ?? backoffDelay(this.#attempt, this.#opts.backoffBaseMs, this.#opts.backoffCapMs);
    this.#attempt += 1;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#open();
    }, inMs);
    this.#setState("reconnecting", { inMs, at: Date.now() + inMs, attempt: this.#attempt, reason, code });
  }

  /** Reconnects (resuming after the last comment) in `inMs` (default now). */
  reconnect({ inMs = 0, reason = "reconnect asked for" } = {}) {
    if (!this.#wanted) return;
    this.#dropSocket(1000, "reconnecting");
    this.#attempt = 0;
    this.#schedule(reason, Math.max(0, Number(inMs) || 0));
  }

  /** Asks for at most `n` user comments a second (`null`: all the server sends). Reconnects
   *  now, resuming, unless a reconnect is already waiting (it then uses the new rate). */
  setMaxRate(n) {
    if (n != null && !(Number.isInteger(n) && n >= 1)) throw new TypeError("maxRate is a positive integer or null");
    this.#maxRate = n ?? null;
    if (this.#wanted && !this.#timer) this.reconnect({ reason: "max rate changed" });
  }

  /** Closes for good: pending posts reject with `Closed`. */
  close() {
    this.#finish("closed", 1000, "closed by the app");
  }

  #finish(reason, code, message) {
    if (!this.#wanted) return;
    this.#wanted = false;
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#dropSocket(1000, "bye");
    this.#posts.rejectAll((ref) => (reason === "banned" ? new Banned(message, ref) : new Closed(message, ref)));
    this.#media?.stop();
    this.#setState("closed", { reason, code, message });
  }

  // === frames ===

  #onMessage(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // not JSON: nothing a server of this contract sends
    }
    this.#lastHeard = Date.now();
    this.#emit("frame", frame);
    switch (frame.type) {
      case "init":
        return this.#onInit(frame);
      case "comments":
        return this.#deliver(frame.comments ?? [], Number(frame.skipped) || 0, false);
      case "deleted":
        this.#media?.drop(frame.ids ?? []);
        return this.#emit("deleted", { ids: frame.ids ?? [] });
      case "viewers":
        this.viewerCount = frame.count;
        return this.#emit("viewers", { count: frame.count });
      case "ack":
        return this.#posts.acked(frame);
      case "settings":
        this.settings = frame.settings;
        return this.#emit("settings", frame.settings);
      case "held":
        return this.#emit("held", { comment: frame.comment });
      case "released":
        return this.#emit("released", { heldId: frame.held_id, id: frame.id });
      case "dropped":
        return this.#emit("dropped", { heldId: frame.held_id });
      case "error":
        return this.#onError(frame);
      case "reconnect":
        return this.reconnect({ inMs: frame.after_ms, reason: "server asked to reconnect" });
      case "refreshed":
        return this.#onRefreshed(frame);
      default:
        return; // pong, and whatever a later version adds
    }
  }

  #onInit(frame) {
    this.#attempt = 0;
    this.#live = true;
    const resumed = this.#position.init(frame);
    if (!resumed) {
      this.#media?.clearLive(); // what waited belongs to the list the app now empties
      this.#emit("reset", { epoch: this.epoch });
    }
    this.viewerCount = frame.viewer_count;
    if (frame.settings) {
      this.settings = frame.settings;
      this.#emit("settings", frame.settings);
    }
    this.#setState("live", { resumed, server: frame.server, viewerCount: frame.viewer_count, epoch: this.epoch });
    this.#deliver(frame.comments ?? [], 0, true);
    this.#emit("viewers", { count: frame.viewer_count });
    this.#posts.resend((f) => this.#send(f));
    this.#startHeartbeat();
    this.#scheduleRefresh();
  }

  /** Hands the app the comments newer than the last one it got, in order, each once; with a
   *  media clock, each when the clock reaches its moment (what `init` carries that is due
   *  already comes at once, as the backlog). */
  #deliver(comments, skipped, backlog) {
    const fresh = [];
    for (const comment of comments) {
      if (this.#position.take(comment)) fresh.push(comment);
    }
    if (!this.#media) {
      if (fresh.length || skipped > 0) this.#emit("comments", { comments: fresh, skipped, backlog });
      return;
    }
    const now = this.#media.now();
    const due = backlog ? fresh.filter((c) => mediaTime(c) <= now) : [];
    if (due.length || skipped > 0) this.#emit("comments", { comments: due, skipped, backlog });
    this.#media.push(backlog ? fresh.filter((c) => mediaTime(c) > now) : fresh);
  }

  // === media time ===

  /** Forgets the replayed comments still waiting, and drops what a replay still fetching
   *  brings (back to live after a scrub). */
  clearReplay() {
    this.#replayGen += 1;
    this.#media?.clearReplay();
  }

  /** With a media clock: comments waiting for their moment, and live ones that came out
   *  late (held longer than `maxHoldMs`, or more than `maxHeld` waiting). */
  get mediaStats() {
    return { held: this.#media?.held ?? 0, late: this.#media?.late ?? 0 };
  }

  /** Fetches the chat of media time [from, to) (Unix ms; a VOD scrub) and emits it as
   *  `comments` events with `replay: true`: on the media clock if there is one, else at
   *  once. With `replace` (the default: a scrub) what earlier replays still had waiting is
   *  forgotten, and an earlier replay still fetching emits nothing; `replace: false` adds
   *  the next stretch of the same playback. Resolves to the comments. */
  async replay(from, to, { replace = true } = {}) {
    if (!(Number.isInteger(from) && Number.isInteger(to) && to > from)) {
      throw new TypeError("replay(from, to): integer Unix ms, to after from");
    }
    if (replace) this.clearReplay();
    const gen = this.#replayGen;
    const base = this.#base.replace(/^ws/, "http").replace(/\/ws$/, "/replay");
    const token = this.#tokens.token;
    const comments = [];
    for (let start = from; start < to; start += REPLAY_WINDOW_MS) {
      const end = Math.min(to, start + REPLAY_WINDOW_MS);
      const response = await fetch(`${base}?from=${start}&to=${end}`, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw errorFromFrame({ type: "error", ...body });
      comments.push(...(body.comments ?? []));
    }
    if (gen !== this.#replayGen || !this.#wanted) return comments; // replaced, or closed
    if (this.#media) {
      this.#media.push(comments, { replay: true });
    } else if (comments.length) {
      this.#emit("comments", { comments, skipped: 0, backlog: false, replay: true });
    }
    return comments;
  }

  #onError(frame) {
    const error = errorFromFrame(frame);
    if (this.#posts.refused(error)) return;
    if (error.ref === null && this.#refreshing) {
      // Comments always carry a ref: a ref-less error now answers the `refresh`.
      if (error.code === "invalid") {
        // A server without `refresh`: the new token takes a new connection (resuming).
        this.#tokens.take(this.#refreshing.token);
        this.#finishRefresh((r) => r.resolve({ exp: this.#tokens.exp, reconnected: true }));
        this.reconnect({ reason: "token renewed (the server has no in-band refresh)" });
        return;
      }
      return this.#failRefresh(error);
    }
    this.#emit("error", error);
  }

  #startHeartbeat() {
    const every = this.#opts.heartbeatMs;
    if (!every) return;
    this.#lastHeard = Date.now();
    this.#heartbeat = setInterval(() => {
      const silent = Date.now() - this.#lastHeard;
      if (silent >= 2 * every) {
        this.reconnect({ inMs: backoffDelay(0, this.#opts.backoffBaseMs, this.#opts.backoffCapMs), reason: "the server stopped answering" });
      } else if (silent >= every) {
        this.#send({ type: "ping" });
      }
    }, every / 2);
  }

  #send(frame) {
    if (!this.#live || !this.#ws) return false;
    try {
      this.#ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false; // closing: onclose follows, and the post is resent after the reconnect
    }
  }

  // === posting ===

  /** Posts `text`; resolves to the comment's id (`{held: true, id}` if it is held for
   *  review), or rejects with a `DanmakuError`. Sent now if live, else when the connection
   *  is; resent with the same `ref` after a reconnect. */
  post(text, { timeoutMs = this.#opts.postTimeoutMs, ref } = {}) {
    if (!this.#wanted) return Promise.reject(new Closed("the stream is closed"));
    if (typeof text !== "string") return Promise.reject(new TypeError("text must be a string"));
    if (!this.#tokens.mayPost) {
      return Promise.reject(new Unauthorized("anonymous connections watch only: connect with a token to post"));
    }
    const frame = { type: "comment", text };
    const media = this.#media ? Math.round(this.#media.now()) : NaN;
    // Stamped only where the server takes it (a VOD's clock is far behind: not a live post).
    if (Date.now() - MEDIA_BEHIND_MS <= media && media <= Date.now() + MEDIA_AHEAD_MS) frame.media_ts = media;
    return this.#posts.add(frame, { timeoutMs, ref }, (f) => this.#send(f));
  }

  /** Deletes a retained comment: the user's own, or any for a moderator of the stream.
   *  Resolves to its id once the server removed it; rejects with `Forbidden`, `NotFound`... */
  delete(id, { timeoutMs = this.#opts.postTimeoutMs, ref } = {}) {
    if (!this.#wanted) return Promise.reject(new Closed("the stream is closed"));
    if (typeof id !== "string") return Promise.reject(new TypeError("id must be a comment id string"));
    if (!this.#tokens.mayPost) {
      return Promise.reject(new Unauthorized("anonymous connections watch only: connect with a token to delete"));
    }
    return this.#posts.add({ type: "delete", id }, { timeoutMs, ref }, (f) => this.#send(f));
  }

  /** Posts not yet answered (sent or waiting for the connection). */
  get pendingPosts() {
    return this.#posts.size;
  }

  // === tokens ===

  /** Replaces the connection's token in-band (`refresh` frame) with `token`, or with one from
   *  `getToken`. Resolves to `{exp}` once the server took it; rejects with `Unauthorized`. */
  refresh(token) {
    const run = () => this.#refresh(token);
    const result = this.#refreshChain.then(run, run);
    this.#refreshChain = result.catch(() => {});
    return result;
  }

  async #refresh(token) {
    if (!this.#wanted) throw new Closed("the stream is closed");
    if (token === undefined) token = await this.#tokens.next();
    if (!this.#live) throw new DanmakuError("not_connected", "not connected: the next connection uses getToken");
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#failRefresh(new Timeout("no answer to refresh")), this.#opts.postTimeoutMs);
      this.#refreshing = { token, resolve, reject, timer };
      this.#send({ type: "refresh", token });
    });
  }

  #onRefreshed(frame) {
    if (!this.#refreshing) return;
    const before = this.#tokens.exp;
    this.#tokens.take(this.#refreshing.token, frame.exp);
    this.#finishRefresh((r) => r.resolve({ exp: frame.exp }));
    this.#emit("refreshed", { exp: frame.exp });
    // A token that lasts no longer than the last one would be renewed again at once, forever.
    if (before === null || this.#tokens.exp > before) this.#scheduleRefresh();
  }

  #failRefresh(error) {
    this.#finishRefresh((r) => r.reject(error));
  }

  #finishRefresh(settle) {
    const waiting = this.#refreshing;
    if (!waiting) return;
    this.#refreshing = null;
    clearTimeout(waiting.timer);
    settle(waiting);
  }

  /** With getToken: renews the token in-band `refreshBeforeMs` (or half its life) before `exp`. */
  #scheduleRefresh() {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    if (!this.#tokens.renewable || this.#tokens.exp === null) return;
    const due = this.#tokens.dueInMs();
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = null;
      this.refresh().catch((error) => {
        if (!this.#live) return; // the next connection fetches a token anyway
        this.#emit("error", error);
        // Try again in a while, as long as the old token has not run out.
        if (this.#tokens.exp * 1000 > Date.now() + 10000) {
          this.#refreshTimer = setTimeout(() => this.#scheduleRefresh(), 10000);
        }
      });
    }, Math.max(0, due));
  }
}
