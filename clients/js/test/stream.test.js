// The library against the real danmaku binary with its embedded broker.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { Closed, Invalid, RateLimited, Timeout, TooLong, Unauthorized, compareIds, connect } from "../src/index.js";
import { api, history, postSystem, sign, startProxy, startServer, until, watch } from "./support.js";

describe("against one instance (embedded broker)", () => {
  let server;
  const open = [];
  const viewer = (stream, options) => {
    const v = watch(server.ws, stream, options);
    open.push(v.stream);
    return v;
  };

  before(async () => {
    server = await startServer({ DANMAKU_RATE_PER_SEC: "0.2", DANMAKU_RATE_BURST: "3" });
  });
  after(async () => {
    for (const s of open) s.close();
    await server.stop();
  });

  test("init's backlog, then live comments, in order; a post resolves to its id", async () => {
    const first = await postSystem(server, "live", "before 1");
    await postSystem(server, "live", "before 2");
    const v = viewer("live", { token: sign({ sub: "ann", name: "Ann" }) });
    await v.live();
    assert.deepEqual(v.texts(), ["before 1", "before 2"]);
    assert.equal(v.seen.states[0].state, "connecting");
    assert.equal(v.seen.resets, 1);
    const live = v.seen.states.find((s) => s.state === "live");
    assert.equal(live.resumed, false);
    assert.equal(typeof live.server.pod, "string");
    assert.equal(v.stream.viewerCount, 1);

    const id = await v.stream.post("hello");
    assert.match(id, /^\d+-\d+$/);
    assert.ok(compareIds(id, first.id) > 0);
    await until("the own comment", () => v.texts().includes("hello"));
    const own = v.seen.comments.find((c) => c.text === "hello");
    assert.equal(own.id, id);
    assert.deepEqual(own.user, { id: "ann", name: "Ann" });
    await postSystem(server, "live", "after");
    await until("a live comment", () => v.texts().includes("after"));
    assert.deepEqual(v.texts(), ["before 1", "before 2", "hello", "after"]);
    assert.equal(v.stream.pendingPosts, 0);
  });

  test("refused posts reject with typed errors", async () => {
    const v = viewer("errors", { token: sign({ sub: "bob" }) });
    await v.live();
    await assert.rejects(v.stream.post("x".repeat(201)), (e) => e instanceof TooLong && e.code === "too_long");
    await assert.rejects(v.stream.post(" \u200b "), (e) => e instanceof Invalid);
    // A burst of 3, then the bucket is empty: the server says when to try again.
    for (let i = 0; i < 3; i++) await v.stream.post(`burst ${i}`);
    const limited = await v.stream.post("one too many").catch((e) => e);
    assert.ok(limited instanceof RateLimited, String(limited));
    assert.ok(limited.retryAfterMs > 0 && limited.retryAfterMs <= 5000, `${limited.retryAfterMs}`);
    assert.ok(limited.retryAt > Date.now());
    // Anonymous viewers watch only: refused without a round trip.
    const anon = viewer("errors");
    await assert.rejects(anon.stream.post("hi"), Unauthorized);
  });

  test("a post with no connection times out cleanly; a closed stream rejects at once", async () => {
    const proxy = await startProxy(() => 1); // nothing listens on port 1
    const s = connect(proxy.ws, "nowhere", { WebSocket, token: sign({ sub: "cy" }), backoffBaseMs: 50 });
    const started = Date.now();
    await assert.rejects(s.post("anyone?", { timeoutMs: 300 }), Timeout);
    assert.ok(Date.now() - started >= 290);
    assert.equal(s.pendingPosts, 0);
    s.close();
    await assert.rejects(s.post("late"), Closed);
    await proxy.stop();
  });

  test("reconnects resume with after= and epoch=: every comment once, in order", async () => {
    const v = viewer("resume", { token: sign({ sub: "dee" }) });
    await v.live();
    let n = 0;
    let publishing = true;
    const publisher = (async () => {
      while (publishing) {
        await postSystem(server, "resume", `c${n++}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    for (let i = 0; i < 4; i++) {
      await until("comments", () => v.seen.comments.length > 5 * (i + 1));
      v.stream.reconnect({ inMs: 50 });
      await v.live(i + 2);
    }
    publishing = false;
    await publisher;
    await until("the last comment", () => v.texts().includes(`c${n - 1}`));
    assert.deepEqual(v.texts(), Array.from({ length: n }, (_, i) => `c${i}`));
    assert.deepEqual(v.seen.comments.map((c) => c.id), (await history(server, "resume")).map((c) => c.id));
    assert.equal(v.seen.resets, 1, "every reconnect resumed");
    const resumes = v.seen.states.filter((s) => s.state === "resuming");
    assert.equal(resumes.length, 4);
    for (const s of resumes) assert.match(s.url, /\?access_token=…&after=\d+-\d+&epoch=[^&]+$/);
    assert.ok(v.seen.states.filter((s) => s.state === "live").slice(1).every((s) => s.resumed));
  });

  test("a post in flight across a reconnect is resent with its ref and published once", async () => {
    const v = viewer("inflight", { token: sign({ sub: "eve" }) });
    await v.live();
    const sent = v.stream.post("exactly once");
    v.stream.reconnect({ inMs: 20 }); // the socket goes before the ack can come
    const id = await sent;
    await v.live(2);
    await until("the comment", () => v.texts().includes("exactly once"));
    await new Promise((r) => setTimeout(r, 200));
    const all = await history(server, "inflight");
    assert.deepEqual(all.filter((c) => c.text === "exactly once").map((c) => c.id), [id]);
    assert.deepEqual(v.texts(), ["exactly once"]);
  });

  test("deleted comments and viewer counts arrive as events", async () => {
    const a = viewer("mod");
    await a.live();
    const b = viewer("mod");
    await b.live();
    await until("two viewers", () => a.seen.viewers.at(-1) === 2);
    const c = await postSystem(server, "mod", "doomed");
    await until("the comment", () => a.texts().includes("doomed"));
    assert.equal((await api(server, "DELETE", `/v1/streams/mod/comments/${c.id}`)).status, 204);
    await until("the deletion", () => a.seen.deleted.includes(c.id));
    b.stream.close();
    await until("one viewer", () => a.seen.viewers.at(-1) === 1);
  });

  test("a ban (4003) stops the stream for good; later posts reject", async () => {
    const v = viewer("bans", { token: sign({ sub: "mallory" }), backoffBaseMs: 10 });
    await v.live();
    assert.equal((await api(server, "POST", "/v1/streams/bans/bans", { user_id: "mallory" })).status, 204);
    await until("closed", () => v.stream.state === "closed");
    const closed = v.seen.states.at(-1);
    assert.equal(closed.reason, "banned");
    assert.equal(closed.code, 4003);
    await assert.rejects(v.stream.post("still here?"), Closed);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(v.seen.states.at(-1).state, "closed", "no reconnect after a ban");
  });

  test("a frame over 4 KiB (1009) stops with the reason; a post that big is refused before", async () => {
    const v = viewer("big", { token: sign({ sub: "big" }) });
    await v.live();
    // A post over the frame limit would cost the connection: the library refuses it.
    await assert.rejects(v.stream.post("x".repeat(5000)), (e) => e instanceof TooLong && /4096/.test(e.message));
    assert.equal(v.stream.state, "live");
    // A refresh frame that big is sent, and the server closes with 1009: no reconnect.
    await assert.rejects(v.stream.refresh(sign({ sub: "big", pad: "x".repeat(5000) })), /closed|connection/);
    await until("closed", () => v.stream.state === "closed");
    const closed = v.seen.states.at(-1);
    assert.deepEqual([closed.state, closed.reason, closed.code], ["closed", "too_big", 1009]);
    await assert.rejects(v.stream.post("after"), Closed);
  });

  test("getToken is called again before exp and the token refreshed in-band", async () => {
    const lifetime = 6; // seconds: refreshed at half its life
    const issued = [];
    const getToken = async () => {
      const token = sign({ sub: "fay", name: `Fay ${issued.length}`, exp: Math.floor(Date.now() / 1000) + lifetime });
      issued.push(token);
      return token;
    };
    const v = viewer("refresh", { getToken });
    await v.live();
    assert.equal(issued.length, 1);
    const refreshed = [];
    v.stream.on("refreshed", (e) => refreshed.push(e));
    await until("a refresh", () => refreshed.length >= 1, 10000);
    assert.equal(issued.length, 2);
    // Past the first token's exp, posting works under the new identity; same socket.
    await new Promise((r) => setTimeout(r, lifetime * 1000 / 2 + 1500));
    const id = await v.stream.post("still me");
    await until("the comment", () => v.texts().includes("still me"));
    // Renewed every half-life: the name is the newest token's, every token but the first
    // came in a `refresh` frame.
    assert.ok(issued.length >= 3, `${issued.length} tokens`);
    assert.equal(v.seen.comments.find((c) => c.id === id).user.name, `Fay ${issued.length - 1}`);
    assert.equal(refreshed.length, issued.length - 1);
    assert.equal(v.seen.states.filter((s) => s.state === "live").length, 1, "no new socket");
    // A token for someone else is refused and the old one stays.
    await assert.rejects(v.stream.refresh(sign({ sub: "not-fay" })), Unauthorized);
    await v.stream.post("and still me");
  });

  test("a server that lost its history (new epoch) makes the client start afresh", async () => {
    let target = server.port;
    const proxy = await startProxy(() => target);
    const other = await startServer();
    try {
      const v = watch(proxy.ws, "epoch", { backoffBaseMs: 20, backoffCapMs: 200 });
      await v.live();
      await postSystem(server, "epoch", "old world");
      await until("the old comment", () => v.texts().includes("old world"));
      // The instance goes; another with nothing of the stream takes its place.
      target = other.port;
      v.stream.reconnect();
      await v.live(2);
      const resume = v.seen.states.filter((s) => s.state === "resuming").at(-1);
      assert.match(resume.url, /after=\d+-\d+&epoch=/);
      assert.equal(v.seen.states.at(-1).resumed, false);
      assert.equal(v.seen.resets, 2);
      assert.equal(v.stream.lastId, null);
      await postSystem(other, "epoch", "new world");
      await until("the new comment", () => v.texts().includes("new world"));
      assert.deepEqual(v.texts(), ["new world"]);
      v.stream.close();
    } finally {
      await proxy.stop();
      await other.stop();
    }
  });

  test("a connection gone silent is found by the heartbeat and replaced, resuming", async () => {
    const proxy = await startProxy(() => server.port);
    const v = watch(proxy.ws, "silent", { heartbeatMs: 300, backoffBaseMs: 20 });
    try {
      await v.live();
      // An idle but healthy connection: pings are answered, nothing is replaced.
      await new Promise((r) => setTimeout(r, 1000));
      assert.ok(v.seen.frames.some((f) => f.type === "pong"), "a ping was answered");
      assert.equal(v.seen.states.filter((s) => s.state === "live").length, 1);
      await postSystem(server, "silent", "before");
      await until("the first comment", () => v.texts().includes("before"));
      proxy.freeze(); // no close, no error: the bytes just stop
      await postSystem(server, "silent", "while frozen");
      await until("a reconnect", () => v.seen.states.some((s) => s.reason === "the server stopped answering"), 5000);
      await v.live(2);
      await until("the missed comment", () => v.texts().includes("while frozen"));
      assert.deepEqual(v.texts(), ["before", "while frozen"]);
      assert.equal(v.seen.states.at(-1).resumed, true);
    } finally {
      v.stream.close();
      await proxy.stop();
    }
  });

  test("a failing getToken is reported and retried with backoff", async () => {
    let calls = 0;
    const getToken = async () => {
      calls += 1;
      if (calls === 1) throw new Error("identity provider down");
      return sign({ sub: "gil" });
    };
    const v = viewer("gettoken", { getToken, backoffBaseMs: 20 });
    await v.live();
    assert.equal(calls, 2);
    assert.equal(v.seen.errors.length, 1);
    assert.match(v.seen.errors[0].message, /identity provider down/);
    assert.equal(v.seen.states[0].state, "reconnecting");
    await v.stream.post("signed in at last");
  });

  test("after= from a kept id resumes a new connection with only what is newer", async () => {
    const kept = await postSystem(server, "kept", "seen before the reload");
    await postSystem(server, "kept", "missed 1");
    await postSystem(server, "kept", "missed 2");
    const first = viewer("kept");
    await first.live();
    const epoch = first.stream.epoch;
    const v = viewer("kept", { after: kept.id, epoch });
    await v.live();
    assert.equal(v.seen.states[0].state, "resuming");
    assert.equal(v.seen.states.at(-1).resumed, true);
    assert.equal(v.seen.resets, 0);
    assert.deepEqual(v.texts(), ["missed 1", "missed 2"]);
  });

  test("failed connects back off with full jitter, growing to the cap", async () => {
    const proxy = await startProxy(() => 1);
    const s = connect(proxy.ws, "nowhere", { WebSocket, backoffBaseMs: 10, backoffCapMs: 80 });
    const waits = [];
    s.on("state", (e) => e.state === "reconnecting" && waits.push(e));
    await until("8 attempts", () => waits.length >= 8);
    s.close();
    await proxy.stop();
    waits.forEach((w, i) => {
      assert.equal(w.attempt, i + 1);
      assert.ok(w.inMs >= 0 && w.inMs < Math.min(80, 10 * 2 ** i), `attempt ${i}: ${w.inMs}`);
      assert.equal(w.reason, "could not connect");
    });
    assert.ok(waits.slice(4).some((w) => w.inMs >= 10), "later waits exceed the first step");
  });

  test("an http:// base works; bad arguments fail fast", async () => {
    assert.ok(server.http.startsWith("http://"));
    const byHttp = watch(server.http, "by-http");
    await byHttp.live();
    assert.match(byHttp.seen.states[0].url, /^ws:\/\/127\.0\.0\.1:\d+\/v1\/streams\/by-http\/ws$/);
    byHttp.stream.close();
    assert.throws(() => connect(server.ws, "bad id!", { WebSocket }), TypeError);
    assert.throws(() => connect("ftp://x", "s", { WebSocket }), TypeError);
    assert.throws(() => connect("not a url", "s", { WebSocket }), TypeError);
    assert.throws(() => connect(server.ws, "s", { WebSocket, token: "a", getToken: () => "b" }), TypeError);
  });
});
