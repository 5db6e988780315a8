// A drain handover: two instances on one Redis behind a proxy (the load balancer). The one
// the clients are on gets SIGTERM, sends `reconnect` hints and exits; the clients follow the
// hint to the other instance, resuming. Every comment arrives once, in order; a post in
// flight across the handover is acked once and appears once.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { history, postSystem, sign, startProxy, startRedis, startServer, until, watch } from "./support.js";

const STREAM = "handover";
let redis;
let a;
let b;
let proxy;
let target;

before(async () => {
  redis = await startRedis();
  const env = (pod) => ({ DANMAKU_REDIS_URL: redis.url, DANMAKU_POD_NAME: pod, DANMAKU_DRAIN_MS: "2000", DANMAKU_HISTORY_LEN: "1000" });
  a = await startServer(env("pod-a"));
  b = await startServer(env("pod-b"));
  target = a.port;
  proxy = await startProxy(() => target);
});

after(async () => {
  await proxy?.stop();
  await a?.stop();
  await b?.stop();
  await redis?.stop();
});

test("a client follows a reconnect hint to the other instance: every comment once, in order", async () => {
  const viewer = watch(proxy.ws, STREAM, { token: sign({ sub: "viewer" }) });
  const poster = watch(proxy.ws, STREAM, { token: sign({ sub: "poster" }) });
  await viewer.live();
  await poster.live();
  for (const v of [viewer, poster]) assert.equal(v.seen.states.at(-1).server.pod, "pod-a");

  // Comments keep coming (through B's API) all through the handover.
  const published = [];
  let publishing = true;
  const publisher = (async () => {
    for (let i = 0; publishing; i++) {
      published.push((await postSystem(b, STREAM, `c${i}`)).id);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();

  // The poster posts the moment its hint arrives: the comment frame goes to A on the socket
  // the client is about to let go, so its ack (if A sends one) is never read there.
  let inFlight = null;
  poster.stream.on("frame", (frame) => {
    if (frame.type === "reconnect" && !inFlight) inFlight = poster.stream.post("in flight");
  });

  await until("comments before the drain", () => viewer.seen.comments.length >= 10);
  target = b.port; // the load balancer stops sending new connections to A...
  a.signal("SIGTERM"); // ...which drains
  const { code } = await a.exited;
  assert.equal(code, 0, a.stderr());
  await until("the poster's hint", () => inFlight !== null);
  const id = await inFlight;
  await until("both clients live on B", () =>
    [viewer, poster].every((v) => v.seen.states.at(-1).state === "live" && v.seen.states.at(-1).server.pod === "pod-b"));
  await new Promise((r) => setTimeout(r, 300));
  publishing = false;
  await publisher;
  const last = published.at(-1);
  await until("the last comment", () => viewer.seen.comments.some((c) => c.id === last));

  for (const v of [viewer, poster]) {
    const hint = v.seen.states.find((s) => s.state === "reconnecting");
    assert.equal(hint.reason, "server asked to reconnect");
    assert.ok(hint.inMs < 1000, `after_ms ${hint.inMs}`);
    const resume = v.seen.states.find((s) => s.state === "resuming");
    assert.match(resume.url, /after=\d+-\d+&epoch=/);
    assert.equal(v.seen.resets, 1, "resumed, never started afresh");
    assert.ok(v.seen.states.filter((s) => s.state === "live").slice(1).every((s) => s.resumed));
  }
  // Exactly the stream's history, once each and in order: what B's API published, with the
  // in-flight post once among them.
  const ids = viewer.seen.comments.map((c) => c.id);
  const stored = (await history(b, STREAM)).map((c) => c.id);
  assert.deepEqual(ids, stored);
  assert.deepEqual(ids.filter((x) => x !== id), published.filter((x) => stored.includes(x)));
  assert.ok(published.every((x) => ids.includes(x)), "no published comment missing");
  assert.deepEqual(viewer.texts().filter((t) => t === "in flight"), ["in flight"]);
  assert.equal(viewer.seen.comments.find((c) => c.text === "in flight").id, id);
  assert.deepEqual(poster.texts().filter((t) => t === "in flight"), ["in flight"]);
  // Its answer came from B, to the resend after the reconnect (A's socket was let go in the
  // same turn as the comment frame went out, so nothing A answered was read).
  const acks = poster.seen.frames.filter((f) => f.type === "ack");
  assert.deepEqual(acks.map((f) => f.id), [id]);
  const liveOnB = poster.seen.frames.findIndex((f) => f.type === "init" && f.server.pod === "pod-b");
  assert.ok(liveOnB >= 0 && poster.seen.frames.indexOf(acks[0]) > liveOnB, "acked on B");
  assert.equal(poster.stream.pendingPosts, 0);
  viewer.stream.close();
  poster.stream.close();
});
