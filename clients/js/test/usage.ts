// Compiled by `tsc --noEmit` only (never run): the README's usage, checked against index.d.ts.
import { connect, RateLimited, TooLong, Banned, type Comment, type StateEvent } from "../src/index.js";

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

async function send(text: string): Promise<string | null> {
  try {
    return await stream.post(text, { timeoutMs: 5000 });
  } catch (e) {
    if (e instanceof RateLimited) console.log(`again in ${e.retryAfterMs} ms`, e.retryAt);
    else if (e instanceof TooLong || e instanceof Banned) console.log(e.code, e.message);
    return null;
  }
}
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
// @ts-expect-error: the stream id is a string
connect("ws://h", 5);
