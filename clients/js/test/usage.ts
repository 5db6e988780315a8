// Compiled by `tsc --noEmit` only (never run): the README's usage, checked against index.d.ts.
import {
  connect, RateLimited, TooLong, Banned, SlowMode, RoleRequired, Blocked,
  type Comment, type StateEvent, type StreamSettings,
} from "../src/index.js";

const stream = connect("ws://127.0.0.1:8080", "demo", {
  getToken: async () => "eyJ...",
  maxRate: 10,
});
const list: Comment[] = [];
stream.on("reset", () => list.splice(0));
stream.on("comments", ({ comments, skipped }) => {
  list.push(...comments);
  const n: number = skipped;
  void n;
});
stream.on("deleted", ({ ids }) => ids.forEach((id) => list.splice(list.findIndex((c) => c.id === id), 1)));
stream.on("viewers", ({ count }) => console.log(count.toFixed(0)));
stream.on("state", (s: StateEvent) => {
  if (s.state === "reconnecting") console.log(`reconnecting in ${s.inMs} ms: ${s.reason}`);
  if (s.state === "closed") console.log(s.reason satisfies "closed" | "banned" | "policy" | "too_big" | "protocol" | "bad_data");
  if (s.state === "live") console.log(s.server.pod, s.resumed);
});

stream.on("settings", (s: StreamSettings) => console.log(s.slow_mode_ms, s.post_roles.join(), s.pinned ?? "none"));
stream.on("held", ({ comment }) => console.log(`held for review: ${comment.text}`, comment.shadow === true));
stream.on("released", ({ heldId, id }) => console.log(`${heldId} is now ${id}`));
stream.on("dropped", ({ heldId }) => console.log(`${heldId} was rejected`));
const pinned: string | null = stream.settings?.pinned ?? null;
void pinned;

async function send(text: string): Promise<string | null> {
  try {
    const posted = await stream.post(text, { timeoutMs: 5000 });
    return typeof posted === "string" ? posted : `held as ${posted.id}: ${posted.held}`;
  } catch (e) {
    if (e instanceof RateLimited || e instanceof SlowMode) console.log(`again in ${e.retryAfterMs} ms`, e.retryAt);
    else if (e instanceof TooLong || e instanceof Banned || e instanceof RoleRequired) console.log(e.code, e.message);
    else if (e instanceof Blocked) console.log("blocked");
    return null;
  }
}
void stream.delete("1732240000000-0").then((id: string) => id.length);
void send("hello");
stream.setMaxRate(null);
stream.reconnect({ inMs: 100 });
void stream.refresh().then(({ exp }) => exp + 1);
stream.close();

// What must not compile.
// @ts-expect-error: no such event
stream.on("comment", () => {});
// @ts-expect-error: post takes a string
void stream.post(42);
// @ts-expect-error: delete takes an id string
void stream.delete(42);
// @ts-expect-error: the stream id is a string
connect("ws://h", 5);

// Media time: comments at the player's moment, a VOD scrub replayed on the same clock.
const player = { programDateTime: () => Date.now() - 10_000 };
const delayed = connect("ws://127.0.0.1:8080", "demo", {
  mediaClock: () => player.programDateTime(),
  maxHoldMs: 30_000,
});
delayed.on("comments", ({ comments, replay }) => {
  for (const c of comments) console.log(c.media_ts ?? c.ts, replay === true);
});
const { held, late }: { held: number; late: number } = delayed.mediaStats;
void held;
void late;
void delayed.replay(Date.now() - 600_000, Date.now() - 300_000).then((cs: Comment[]) => cs.length);
