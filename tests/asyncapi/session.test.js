// A recorded session of real frames against docs/asyncapi.yaml: the danmaku binary in
// development mode (embedded broker), real WebSocket clients provoking every frame the
// document defines, and every frame sent and received checked against the document's
// message schemas as it happens. Frames sent to be refused (bad JSON, unknown type, ...)
// must be refused by the document too. Ends with a drain (SIGTERM): `reconnect`, then 1001.
//
// Set DANMAKU_ASYNCAPI_RECORD=<file> to keep the recording (one JSON line per frame).
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { after, before, test } from "node:test";

import { accepting, check, loadContract } from "./contract.js";
import { Client, api, devToken, startServer, until } from "./server.js";

const STREAM = "asyncapi";
const THIN = "asyncapi-thin";
const DRAIN_MS = 1500;

/** Server messages a single binary cannot be made to send: none. */
const NOT_PROVOKED = new Map();

const contract = loadContract();
const recording = [];
const failures = [];
const seen = new Map(); // message name -> frames of it
let server;
const clients = [];

/** Checks a frame as it is sent or received; a failure names the frame and the error. */
function onFrame(entry, frame) {
  if (entry.dir === "sent") {
    if (entry.malformed) {
      const takers = frame === undefined ? [] : accepting(contract, "client", frame);
      if (takers.length > 0) {
        failures.push(`${entry.client} sent a frame the server refuses but ${takers} accepts: ${entry.text}`);
      }
      return;
    }
    const error = frame === undefined ? "not JSON" : check(contract, "client", frame);
    if (error) failures.push(`${entry.client} sent ${entry.text}\n    ${error}`);
    else count(`sent:${frame.type}`, frame);
    return;
  }
  if (entry.binary) failures.push(`${entry.client} received a binary frame`);
  if (!entry.text.startsWith('{"type":"')) failures.push(`${entry.client} received a frame without type first: ${entry.text}`);
  const error = frame === undefined ? "not JSON" : check(contract, "server", frame);
  if (error) failures.push(`${entry.client} received ${entry.text}\n    ${error}`);
  else count(frame.type, frame);
}

function count(name, frame) {
  if (!seen.has(name)) seen.set(name, []);
  seen.get(name).push(frame);
}

async function open(label, options) {
  const client = await Client.open(server, label, { stream: STREAM, ...options }, recording, onFrame);
  clients.push(client);
  return client;
}

const people = {};
let anon;
let alice;
let moderator;
let bob;

before(async () => {
  server = await startServer({ DANMAKU_DRAIN_MS: String(DRAIN_MS) });
  for (const name of ["alice", "bob", "rate", "slow", "carl", "eve"]) people[name] = await devToken(server, name);
  people.mod = await devToken(server, "mod", STREAM);
});

after(async () => {
  for (const c of clients) c.ws.terminate();
  await server?.stop();
  if (process.env.DANMAKU_ASYNCAPI_RECORD) {
    writeFileSync(process.env.DANMAKU_ASYNCAPI_RECORD, recording.map((e) => JSON.stringify(e)).join("\n") + "\n");
  }
});

test("handshakes: anonymous, Bearer header, access_token; no subprotocol; init first", async () => {
  anon = await open("anon", {});
  alice = await open("alice", { token: people.alice.token });
  moderator = await open("mod", { token: people.mod.token, inQuery: true });
  bob = await open("bob", { token: people.bob.token, inQuery: true });
  for (const c of [anon, alice, moderator, bob]) {
    assert.equal(c.upgrade.headers["sec-websocket-protocol"], undefined, c.label);
    assert.equal(recording.find((e) => e.client === c.label && e.dir === "received").text.startsWith('{"type":"init"'), true);
    assert.equal(c.init.stream_id, STREAM);
    assert.equal(c.init.resumed, false);
  }
  assert.deepEqual(anon.init.settings, { slow_mode_ms: 0, post_roles: [], pinned: null });
  await anon.next("viewers", (f) => f.count === 4);
});

const ids = {};

test("ping, comments (ref, no ref, media_ts), a system comment with data", async () => {
  assert.equal((await alice.ask({ type: "ping" })).type, "pong");

  const ack = await alice.ask({ type: "comment", text: "hello", ref: "a1" });
  assert.equal(ack.type, "ack");
  ids.hello = ack.id;
  const frame = await anon.next("comments", (f) => f.comments.some((c) => c.id === ids.hello));
  assert.deepEqual(frame.comments.find((c) => c.id === ids.hello).user, { id: "dev-alice", name: "alice" });

  const bare = await alice.ask({ type: "comment", text: "no ref" });
  assert.deepEqual([bare.type, bare.ref], ["ack", null]);

  const mediaTs = Date.now() - 5000;
  const media = await alice.ask({ type: "comment", text: "at the goal", ref: "a3", media_ts: mediaTs });
  assert.equal(media.type, "ack");
  const withMedia = await anon.next("comments", (f) => f.comments.some((c) => c.id === media.id));
  assert.equal(withMedia.comments.find((c) => c.id === media.id).media_ts, mediaTs);

  const gift = await api(server, "POST", `/v1/streams/${STREAM}/comments`, {
    kind: "gift", text: "alice sent a rose", data: { item: "rose", amount: 3 },
  });
  assert.equal(gift.status, 201);
  ids.gift = gift.body.comment.id;
  const giftFrame = await anon.next("comments", (f) => f.comments.some((c) => c.id === ids.gift));
  const shown = giftFrame.comments.find((c) => c.id === ids.gift);
  assert.deepEqual([shown.user, shown.data], [null, { item: "rose", amount: 3 }]);

  const bobs = await bob.ask({ type: "comment", text: "bob was here", ref: "b1" });
  assert.equal(bobs.type, "ack");
  ids.bob = bobs.id;
});

test("refusals: malformed frames (the document refuses them too) and well-formed ones", async () => {
  const refused = async (client, frame, code, { malformed = false } = {}) => {
    client.send(frame, { malformed });
    const ref = typeof frame === "object" ? frame.ref : undefined;
    const error = await client.next(["error", "ack"], (f) => ref === undefined || f.ref === ref);
    assert.deepEqual([error.type, error.code], ["error", code], `${JSON.stringify(frame)} -> ${JSON.stringify(error)}`);
    return error;
  };
  await refused(alice, "{", "invalid", { malformed: true });
  await refused(alice, { type: "nope" }, "invalid", { malformed: true });
  await refused(alice, { type: "comment" }, "invalid", { malformed: true });
  await refused(alice, { type: "comment", text: 42 }, "invalid", { malformed: true });
  // A ref over 64 characters is refused before it is read: the error carries none.
  alice.send({ type: "comment", text: "long ref", ref: "r".repeat(65) }, { malformed: true });
  assert.equal((await alice.next("error")).code, "invalid");
  await refused(alice, { type: "delete", id: "not-an-id", ref: "d0" }, "invalid", { malformed: true });
  assert.equal((await alice.ask({ type: "ping" })).type, "pong");

  // Well-formed frames the server refuses for what they say or for the state it is in.
  await refused(alice, { type: "comment", text: "  \u200b ", ref: "w1" }, "invalid");
  await refused(alice, { type: "comment", text: "x".repeat(201), ref: "w2" }, "too_long");
  await refused(alice, { type: "comment", text: "too early", ref: "w3", media_ts: Date.now() - 600_000 }, "invalid");
  await refused(alice, { type: "delete", id: "1-0", ref: "d1" }, "not_found");
  await refused(alice, { type: "delete", id: ids.bob, ref: "d2" }, "forbidden");
  await refused(alice, { type: "refresh", token: people.bob.token }, "unauthorized");
  await refused(anon, { type: "comment", text: "hi", ref: "n1" }, "unauthorized");
  await refused(anon, { type: "refresh", token: people.alice.token }, "unauthorized");

  const rate = await open("rate", { token: people.rate.token });
  const answers = [];
  for (let i = 0; i < 8; i += 1) rate.send({ type: "comment", text: `quick ${i}`, ref: `q${i}` });
  for (let i = 0; i < 8; i += 1) answers.push(await rate.next(["ack", "error"], (f) => f.ref === `q${i}`));
  const limited = answers.find((a) => a.type === "error");
  assert.equal(limited?.code, "rate_limited", JSON.stringify(answers));
  assert.ok(limited.retry_after_ms > 0);
});

test("refresh: the same user's new token is taken", async () => {
  const fresh = await devToken(server, "alice");
  const answer = await alice.ask({ type: "refresh", token: fresh.token });
  assert.deepEqual(answer, { type: "refreshed", exp: fresh.expires_at });
});

test("deleted: by its author over the socket, by a moderator over HTTP", async () => {
  const ack = await alice.ask({ type: "delete", id: ids.hello, ref: "d3" });
  assert.deepEqual(ack, { type: "ack", ref: "d3", id: ids.hello });
  await anon.next("deleted", (f) => f.ids.includes(ids.hello));
  const http = await api(server, "DELETE", `/v1/streams/${STREAM}/comments/${ids.bob}`, undefined, people.mod.token);
  assert.equal(http.status, 204);
  await anon.next("deleted", (f) => f.ids.includes(ids.bob));
});

test("settings: slow mode, post roles, a pin", async () => {
  const patch = (body) => api(server, "PATCH", `/v1/streams/${STREAM}/settings`, body, people.mod.token);
  assert.equal((await patch({ slow_mode_ms: 5000, pinned: ids.gift })).status, 200);
  await anon.next("settings", (f) => f.settings.slow_mode_ms === 5000 && f.settings.pinned === ids.gift);
  const slow = await open("slow", { token: people.slow.token });
  assert.equal(slow.init.settings.slow_mode_ms, 5000);
  assert.equal((await slow.ask({ type: "comment", text: "first", ref: "s1" })).type, "ack");
  const slowed = await slow.ask({ type: "comment", text: "second", ref: "s2" });
  assert.equal(slowed.code, "slow_mode");
  assert.ok(slowed.retry_after_ms > 0 && slowed.retry_after_ms <= 5000);

  assert.equal((await patch({ slow_mode_ms: 0, post_roles: ["vip"] })).status, 200);
  await slow.next("settings", (f) => f.settings.post_roles.length === 1);
  assert.equal((await slow.ask({ type: "comment", text: "may I?", ref: "s3" })).code, "role_required");

  assert.equal((await patch({ post_roles: [], pinned: null })).status, 200);
  await anon.next("settings", (f) => f.settings.post_roles.length === 0 && f.settings.pinned === null);
});

test("blocked terms: refused, held (released, dropped), shadowed", async () => {
  const terms = [
    { term: "badword", action: "refuse" },
    { term: "spoiler", action: "hold" },
    { term: "psst", action: "shadow" },
  ];
  assert.equal((await api(server, "PUT", `/v1/streams/${STREAM}/terms`, { terms })).status, 200);
  const carl = await open("carl", { token: people.carl.token });
  assert.equal((await carl.ask({ type: "comment", text: "BADWORD", ref: "c1" })).code, "blocked");

  const held = await carl.ask({ type: "comment", text: "a spoiler", ref: "c2" });
  assert.deepEqual([held.type, held.held], ["ack", true]);
  await moderator.next("held", (f) => f.comment.id === held.id && f.comment.text === "a spoiler");
  const approved = await api(server, "POST", `/v1/streams/${STREAM}/held/${held.id}/approve`);
  assert.equal(approved.status, 201);
  const released = await carl.next("released", (f) => f.held_id === held.id);
  assert.equal(released.id, approved.body.comment.id);
  await anon.next("comments", (f) => f.comments.some((c) => c.id === released.id));

  const second = await carl.ask({ type: "comment", text: "another spoiler", ref: "c3" });
  assert.equal(second.held, true);
  assert.equal((await api(server, "DELETE", `/v1/streams/${STREAM}/held/${second.id}`)).status, 204);
  await carl.next("dropped", (f) => f.held_id === second.id);

  const shadowed = await carl.ask({ type: "comment", text: "psst, a secret", ref: "c4" });
  assert.equal(shadowed.type, "ack");
  const marked = await moderator.next("comments", (f) => f.comments.some((c) => c.id === shadowed.id));
  assert.equal(marked.comments.find((c) => c.id === shadowed.id).shadow, true);
  const own = await carl.next("comments", (f) => f.comments.some((c) => c.id === shadowed.id));
  assert.equal(own.comments.find((c) => c.id === shadowed.id).shadow, undefined);
});

test("a ban: an error frame, then close 4003", async () => {
  const eve = await open("eve", { token: people.eve.token });
  assert.equal((await api(server, "POST", `/v1/streams/${STREAM}/bans`, { user_id: "dev-eve" })).status, 204);
  assert.equal((await eve.next("error")).code, "banned");
  assert.equal((await eve.closed).code, 4003);
});

test("resume: init resumed, then one deleted frame", async () => {
  const resumer = await open("resume", { query: { after: ids.hello, epoch: anon.init.epoch } });
  assert.equal(resumer.init.resumed, true);
  assert.ok(resumer.init.comments.every((c) => c.id !== ids.hello && c.id !== ids.bob));
  const frames = recording.filter((e) => e.client === "resume" && e.dir === "received");
  const deleted = await resumer.next("deleted");
  assert.ok(frames[1].text.startsWith('{"type":"deleted"'), frames[1]?.text);
  assert.ok(deleted.ids.includes(ids.bob), JSON.stringify(deleted));
});

test("thinning: a viewer at max_rate=1 is told what it was not sent in skipped", async () => {
  const thin = await Client.open(server, "thin", { stream: THIN, query: { max_rate: "1" } }, recording, onFrame);
  clients.push(thin);
  let published = 0;
  const post = async (kind, text) => {
    const body = kind === "user" ? { kind, text, user: { id: "crowd", name: "Crowd" } } : { kind, text };
    assert.equal((await api(server, "POST", `/v1/streams/${THIN}/comments`, body)).status, 201);
    if (kind === "user") published += 1;
  };
  const deadline = Date.now() + 10_000;
  while (!thin.frames.some((f) => f.frame?.skipped) && Date.now() < deadline) {
    await post("user", `crowd ${published}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await post("system", "end");
  await thin.next("comments", (f) => f.comments.some((c) => c.text === "end"));
  const frames = thin.frames.map((f) => f.frame).filter((f) => f.type === "comments");
  const received = frames.flatMap((f) => f.comments).filter((c) => c.kind === "user").length;
  const skipped = frames.reduce((n, f) => n + (f.skipped ?? 0), 0);
  assert.ok(skipped >= 1, `skipped ${skipped} of ${published}`);
  assert.equal(received + skipped, published, "every comment received or counted in skipped");
});

test("drain (SIGTERM): every open socket gets reconnect, then 1001", async () => {
  const open = clients.filter((c) => c.ws.readyState === c.ws.OPEN);
  assert.ok(open.length >= 8, `${open.length} open sockets`);
  const started = Date.now();
  server.signal("SIGTERM");
  for (const c of open) {
    const hint = await c.next("reconnect", () => true, DRAIN_MS + 2000);
    assert.ok(hint.after_ms < 1000, JSON.stringify(hint));
  }
  for (const c of open) assert.equal((await c.closed).code, 1001, c.label);
  assert.deepEqual(await server.exited, { code: 0, signal: null });
  assert.ok(Date.now() - started < DRAIN_MS + 3000);
});

test("every frame of the session is valid against docs/asyncapi.yaml", (t) => {
  const sent = recording.filter((e) => e.dir === "sent");
  const received = recording.filter((e) => e.dir === "received");
  t.diagnostic(`frames: ${recording.length} (${sent.length} sent, ${sent.filter((e) => e.malformed).length} of them malformed; ${received.length} received)`);
  assert.deepEqual(failures, []);
});

test("the session covers every message of the document", (t) => {
  const missing = [...contract.server].filter((name) => !seen.has(name) && !NOT_PROVOKED.has(name));
  assert.deepEqual(missing, [], "server messages never received");
  const unsent = [...contract.client].filter((name) => !seen.has(`sent:${name}`));
  assert.deepEqual(unsent, [], "client messages never sent");
  t.diagnostic(`messages: ${contract.messages.size} (${contract.client.size} client, ${contract.server.size} server); received by type: ${
    [...contract.server].map((n) => `${n} ${seen.get(n)?.length ?? 0}`).join(", ")}`);
  // Optional fields the recording must have shown at least once.
  const has = (name, pred) => (seen.get(name) ?? []).some(pred);
  assert.ok(has("comments", (f) => f.skipped >= 1), "comments with skipped");
  assert.ok(has("comments", (f) => f.comments.some((c) => c.media_ts)), "a comment with media_ts");
  assert.ok(has("comments", (f) => f.comments.some((c) => c.shadow === true)), "a comment marked shadow");
  assert.ok(has("ack", (f) => f.held === true), "an ack of a held comment");
  assert.ok(has("error", (f) => f.retry_after_ms > 0 && f.ref), "an error with ref and retry_after_ms");
  assert.ok(has("init", (f) => f.resumed === true), "a resumed init");
});
