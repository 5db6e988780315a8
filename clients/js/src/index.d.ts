// Types of danmaku-client (the code is plain JavaScript in index.js, errors.js, media.js, posts.js, position.js, tokens.js and wire.js).

/** A comment, as the server sends it. */
export interface Comment {
  /** `<ms>-<seq>`, ordered by (ms, seq); unique within the stream. */
  id: string;
  stream_id: string;
  kind: "user" | "gift" | "follow" | "mission" | "system" | (string & {});
  user: { id: string; name: string } | null;
  text: string;
  /** Free JSON for system comments; `null` for user comments. */
  data: Record<string, unknown> | null;
  /** Publish time, Unix ms. */
  ts: number;
  /** The media moment (Unix ms) its author's player showed when posting, if it said. */
  media_ts?: number;
  /** Only for a moderator of the stream: the comment is seen by its author and moderators
   *  only (a shadow ban, or a term set to `shadow`). */
  shadow?: true;
}

/** A stream's settings (`init`, `settings` frames). */
export interface StreamSettings {
  /** 0: off; else a signed-in user who does not moderate posts once per this many ms. */
  slow_mode_ms: number;
  /** Empty: any signed-in user posts; else only users with one of these token `roles`. */
  post_roles: string[];
  /** The pinned comment's id, or null. */
  pinned: string | null;
}

/** A held comment approved or posted: `post()`'s answer for a comment held for review. */
export interface HeldPost {
  held: true;
  /** The held id (not the id it gets if a moderator approves it). */
  id: string;
}

/** The `server` block of `init`: the instance that answered. */
export interface ServerInfo {
  pod: string;
  slot: string;
  version: string;
}

/** A WHATWG-style WebSocket constructor (browsers, Node >= 22, or the `ws` package). */
export interface WebSocketConstructor {
  new (url: string): WebSocketLike;
}

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
}

export interface ConnectOptions {
  /** A JWT; without it (and without getToken) the connection is anonymous: watch only. */
  token?: string;
  /** Called for a token before connecting when the last one is due (or a handshake failed),
   *  and before `exp` to refresh it in-band. `null` connects anonymously. */
  getToken?: () => string | null | Promise<string | null>;
  /** At most this many user comments a second (`max_rate`); the server caps it. */
  maxRate?: number | null;
  /** Resume after this comment id from the start (e.g. one kept across a page reload). */
  after?: string | null;
  /** The epoch `after` belongs to. */
  epoch?: string | null;
  /** The WebSocket implementation; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor | (new (url: string) => any);
  /** Backoff: the first step (ms, default 500); each failed attempt doubles it. */
  backoffBaseMs?: number;
  /** Backoff: the largest step (ms, default 30000). */
  backoffCapMs?: number;
  /** How long a post (and a refresh) waits for its answer (ms, default 10000). */
  postTimeoutMs?: number;
  /** Silence after which a `ping` is sent (ms, default 20000); twice it and the socket counts
   *  as dead and is replaced. `0` turns it off. */
  heartbeatMs?: number;
  /** With getToken: how long before `exp` the token is renewed (ms, default 60000; at most
   *  half the token's life). */
  refreshBeforeMs?: number;
  /** The player's current media time (Unix ms, e.g. the program date time of what it
   *  shows). With it, comments come when it reaches their moment (`media_ts`, else `ts`), in
   *  media order, and `post()` stamps `media_ts` from it. */
  mediaClock?: () => number;
  /** With a media clock: the longest a live comment waits (ms, default 60000); past it, it
   *  comes at once and counts as late. */
  maxHoldMs?: number;
  /** With a media clock: the most live comments that wait (default 1000). */
  maxHeld?: number;
}

/** Why a stream stopped for good. */
export type CloseReason = "closed" | "banned" | "policy" | "too_big" | "protocol" | "bad_data";

export type StateEvent =
  | { state: "connecting"; url: string; after: null }
  | { state: "resuming"; url: string; after: string }
  | { state: "live"; resumed: boolean; server: ServerInfo; viewerCount: number; epoch: string | null }
  | { state: "reconnecting"; inMs: number; at: number; attempt: number; reason: string; code?: number }
  | { state: "closed"; reason: CloseReason; code: number; message: string };

export type State = StateEvent["state"];

export interface CommentsEvent {
  /** New comments, oldest first, each delivered once, in id order across reconnects. */
  comments: Comment[];
  /** How many the server chose not to send before these (thinning); 0 when none. */
  skipped: number;
  /** True for the comments an `init` carries (history, or what was missed while away). */
  backlog: boolean;
  /** True for comments of `replay()` (a VOD's chat). */
  replay?: boolean;
}

export interface StreamEvents {
  state: StateEvent;
  /** Empty your list: the comments that follow start afresh (first `init`, a resume the
   *  server could not honour, a stream whose history was lost). */
  reset: { epoch: string | null };
  comments: CommentsEvent;
  deleted: { ids: string[] };
  viewers: { count: number };
  /** The stream's settings: from each `init`, and on every change. */
  settings: StreamSettings;
  /** To moderators of the stream: a comment held for review (its `id` the held id). */
  held: { comment: Comment };
  /** To the author: the held comment was approved and published as `id`. */
  released: { heldId: string; id: string };
  /** To the author: the held comment was rejected. */
  dropped: { heldId: string };
  refreshed: { exp: number };
  /** Errors that belong to no post: a refused automatic refresh, a failing getToken. */
  error: DanmakuError;
  /** Every frame the server sent, parsed (for debugging and later additions). */
  frame: { type: string; [field: string]: unknown };
}

export interface PostOptions {
  /** ms; default the postTimeoutMs option. */
  timeoutMs?: number;
  /** Reuse a ref to retry a post idempotently (within the server's 2 minutes). */
  ref?: string;
}

export declare class Stream {
  readonly streamId: string;
  /** The newest comment id delivered, `null` before any. */
  readonly lastId: string | null;
  readonly epoch: string | null;
  readonly viewerCount: number | null;
  /** The stream's settings last heard; null before the first `init`. */
  readonly settings: StreamSettings | null;
  readonly state: State;
  /** Posts not yet answered. */
  readonly pendingPosts: number;
  constructor(url: string, streamId: string, options?: ConnectOptions);
  on<K extends keyof StreamEvents>(event: K, listener: (payload: StreamEvents[K]) => void): () => void;
  off<K extends keyof StreamEvents>(event: K, listener: (payload: StreamEvents[K]) => void): void;
  /** Resolves to the new comment's id (or, for a comment held for review, `{held: true, id}`
   *  with its held id); rejects with a DanmakuError subclass. */
  post(text: string, options?: PostOptions): Promise<string | HeldPost>;
  /** Deletes a retained comment (one's own; any, for a moderator); resolves to its id. */
  delete(id: string, options?: PostOptions): Promise<string>;
  /** In-band token refresh with `token`, or one from getToken. */
  refresh(token?: string): Promise<{ exp: number; reconnected?: boolean }>;
  /** Reconnect (resuming) in `inMs` (default 0). */
  reconnect(options?: { inMs?: number; reason?: string }): void;
  /** Change max_rate (`null`: all); reconnects, resuming. */
  setMaxRate(n: number | null): void;
  /** Close for good; pending posts reject with Closed. */
  close(): void;
  /** With a media clock: comments waiting for their moment, and live ones that came late. */
  readonly mediaStats: { held: number; late: number };
  /** Fetches the chat of media time [from, to) (Unix ms) and emits it as `comments` with
   *  `replay: true`, on the media clock if there is one; resolves to the comments. With
   *  `replace` (default true: a scrub) earlier replays' waiting comments are forgotten;
   *  `replace: false` adds the next stretch of the same playback. */
  replay(from: number, to: number, options?: { replace?: boolean }): Promise<Comment[]>;
  /** Forgets the replayed comments still waiting (back to live). */
  clearReplay(): void;
}

/** Opens a stream on the server at `url` (`ws(s)://host:port`; `http(s)://` accepted). */
export declare function connect(url: string, streamId: string, options?: ConnectOptions): Stream;

/** Orders two comment ids: negative, zero or positive. */
export declare function compareIds(a: string, b: string): number;

export declare class DanmakuError extends Error {
  /** The contract's error code, or `timeout` / `closed` / `not_connected`. */
  readonly code: string;
  /** The post's ref, when the error answers a post. */
  readonly ref: string | null;
  constructor(code: string, message: string, ref?: string | null);
}
export declare class RateLimited extends DanmakuError {
  readonly code: "rate_limited";
  readonly retryAfterMs: number;
  /** Unix ms from which posting may succeed again. */
  readonly retryAt: number;
  constructor(message: string, retryAfterMs: number, ref?: string | null);
}
export declare class SlowMode extends DanmakuError {
  readonly code: "slow_mode";
  readonly retryAfterMs: number;
  /** Unix ms from which posting may succeed again. */
  readonly retryAt: number;
  constructor(message: string, retryAfterMs: number, ref?: string | null);
}
export declare class RoleRequired extends DanmakuError {
  readonly code: "role_required";
  constructor(message: string, ref?: string | null);
}
export declare class Blocked extends DanmakuError {
  readonly code: "blocked";
  constructor(message: string, ref?: string | null);
}
export declare class Forbidden extends DanmakuError {
  readonly code: "forbidden";
  constructor(message: string, ref?: string | null);
}
export declare class NotFound extends DanmakuError {
  readonly code: "not_found";
  constructor(message: string, ref?: string | null);
}
export declare class TooLong extends DanmakuError {
  readonly code: "too_long";
  constructor(message: string, ref?: string | null);
}
export declare class Banned extends DanmakuError {
  readonly code: "banned";
  constructor(message: string, ref?: string | null);
}
export declare class Unauthorized extends DanmakuError {
  readonly code: "unauthorized";
  constructor(message: string, ref?: string | null);
}
export declare class Invalid extends DanmakuError {
  readonly code: "invalid";
  constructor(message: string, ref?: string | null);
}
export declare class Timeout extends DanmakuError {
  readonly code: "timeout";
  constructor(message: string, ref?: string | null);
}
export declare class Closed extends DanmakuError {
  readonly code: "closed";
  constructor(message: string, ref?: string | null);
}
/** The error an `error` frame stands for. */
export declare function errorFromFrame(frame: {
  code: string;
  message?: string;
  ref?: string | null;
  retry_after_ms?: number;
}): DanmakuError;
