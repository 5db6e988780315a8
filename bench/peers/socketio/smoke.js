#!/usr/bin/env node
// Smoke test for two running peer instances on one Redis Cluster, speaking raw Engine.IO v4 /
// Socket.IO v5 framing over a plain WebSocket, exactly as the Rust load generator does.
//
//   PEER1=127.0.0.1:8301 PEER2=127.0.0.1:8302 node smoke.js
//
// Optional: STREAM (default s1), COUNT (default 20), INIT_COMMENTS (default 50, as the peers).
// Exits 0 on success, 1 with a message otherwise.
"use strict";

const WebSocket = require("ws");

const PEER1 = process.env.PEER1 || "127.0.0.1:8301";
const PEER2 = process.env.PEER2 || "127.0.0.1:8302";
const STREAM = process.env.STREAM || "s1";
const COUNT = Number(process.env.COUNT || 20);
const INIT_COMMENTS = Number(process.env.INIT_COMMENTS || 50);
const STEP_TIMEOUT_MS = 10000;

const started = Date.now();
function log(msg) {
  process.stdout.write(`[smoke +${String(Date.now() - started).padStart(5)}ms] ${msg}\n`);
}
function die(msg) {
  process.stderr.write(`smoke: FAIL: ${msg}\n`);
  process.exit(1);
}
setTimeout(() => die("overall timeout (60 s)"), 60000).unref();

// Compare two Redis Stream entry ids "ms-seq".
function cmpId(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am < bm ? -1 : am > bm ? 1 : as < bs ? -1 : as > bs ? 1 : 0;
}

// A raw Engine.IO/Socket.IO client: records every event, answers pings.
class RawClient {
  constructor(name, hostPort, auth) {
    this.name = name;
    this.events = []; // [event, data]
    this.comments = [];
    this.acks = [];
    this.init = null;
    this.connectError = null;
    this.open = null;
    this.waiters = [];
    this.ws = new WebSocket(`ws://${hostPort}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false });
    this.ws.on("message", (buf, isBinary) => this.onFrame(isBinary ? null : buf.toString("utf8"), auth));
    this.ws.on("error", (err) => die(`${name}: websocket error: ${err.message}`));
    this.closed = false;
    this.ws.on("close", () => {
      this.closed = true;
      this.poke();
    });
  }

  onFrame(frame, auth) {
    if (frame === null) die(`${this.name}: unexpected binary frame`);
    const eio = frame[0];
    if (eio === "0") {
      // Engine.IO open: {"sid","upgrades","pingInterval","pingTimeout","maxPayload"}
      this.open = JSON.parse(frame.slice(1));
      // Socket.IO CONNECT to the default namespace with auth.
      this.ws.send("40" + JSON.stringify(auth));
    } else if (eio === "2") {
      this.ws.send("3"); // pong
    } else if (eio === "4") {
      const sio = frame[1];
      const body = frame.slice(2);
      if (sio === "0") {
        this.connected = JSON.parse(body); // {"sid": ...}
      } else if (sio === "4") {
        this.connectError = JSON.parse(body); // {"message": ...}
      } else if (sio === "2") {
        const [event, data] = JSON.parse(body);
        this.events.push([event, data]);
        if (event === "init") {
          if (this.init) die(`${this.name}: second init`);
          this.init = data;
        } else if (event === "comments") {
          this.comments.push(...data.comments);
        } else if (event === "ack") {
          this.acks.push(data);
        } else {
          die(`${this.name}: unexpected event ${event}`);
        }
      } else {
        die(`${this.name}: unexpected socket.io packet ${JSON.stringify(frame)}`);
      }
    } else {
      die(`${this.name}: unexpected engine.io packet ${JSON.stringify(frame)}`);
    }
    this.poke();
  }

  poke() {
    for (const w of this.waiters.splice(0)) w();
  }

  async until(what, pred) {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) die(`${this.name}: timed out waiting for ${what}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  emit(event, data) {
    this.ws.send("42" + JSON.stringify([event, data]));
  }

  close() {
    this.ws.close();
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function checkComment(who, c, stream) {
  if (typeof c.id !== "string" || !/^\d+-\d+$/.test(c.id)) die(`${who}: bad comment id ${JSON.stringify(c)}`);
  if (typeof c.ts !== "number" || !(c.ts > 1e12)) die(`${who}: comment without a ts: ${JSON.stringify(c)}`);
  if (c.stream_id !== stream) die(`${who}: wrong stream_id: ${JSON.stringify(c)}`);
  if (c.kind !== "user" || c.data !== null || !c.user || c.user.id !== c.user.name) die(`${who}: bad comment shape: ${JSON.stringify(c)}`);
}

function checkLive(who, client, postedIds, texts) {
  const got = client.comments.map((c) => c.id);
  if (got.length !== postedIds.length) die(`${who}: got ${got.length} comments, want ${postedIds.length}: ${got.join(",")}`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== postedIds[i]) die(`${who}: comment #${i} is ${got[i]}, want ${postedIds[i]} (all: ${got.join(",")})`);
    if (i > 0 && cmpId(got[i - 1], got[i]) >= 0) die(`${who}: ids not increasing at #${i}`);
    checkComment(who, client.comments[i], STREAM);
    if (client.comments[i].text !== texts[i]) die(`${who}: comment #${i} text ${JSON.stringify(client.comments[i].text)}, want ${JSON.stringify(texts[i])}`);
  }
}

async function main() {
  log(`peers ${PEER1} and ${PEER2}, stream ${STREAM}, ${COUNT} comments`);

  // 0. Handshake rejections and refusals.
  const bad = new RawClient("bad", PEER1, { stream: "no spaces allowed", user: "x" });
  await bad.until("CONNECT_ERROR", () => bad.connectError);
  if (bad.connectError.message !== "bad_request") die(`bad: CONNECT_ERROR ${JSON.stringify(bad.connectError)}`);
  log(`invalid stream -> CONNECT_ERROR 44${JSON.stringify(bad.connectError)}`);
  bad.close();

  // 1. Viewer A (anonymous) on instance 1, viewer B on instance 2.
  const a = new RawClient("A@1", PEER1, { stream: STREAM });
  const b = new RawClient("B@2", PEER2, { stream: STREAM, user: "viewer-b" });
  await a.until("init", () => a.init);
  await b.until("init", () => b.init);
  log(`A got open ${JSON.stringify(a.open)}`);
  log(`A init: ${a.init.comments.length} comments, viewer_count ${a.init.viewer_count}; B init: ${b.init.comments.length} comments`);
  for (const [who, c] of [["A", a], ["B", b]]) {
    if (c.init.stream_id !== STREAM || !Array.isArray(c.init.comments) || c.init.viewer_count !== 0) die(`${who}: bad init ${JSON.stringify(c.init)}`);
  }

  // Anonymous A may not post; B's blank and too-long texts are refused.
  a.emit("comment", { text: "hi", ref: "anon1" });
  b.emit("comment", { text: "   ", ref: "blank" });
  b.emit("comment", { text: "あ".repeat(201), ref: "long" });
  await a.until("unauthorized ack", () => a.acks.length === 1);
  await b.until("bad_text acks", () => b.acks.length === 2);
  if (a.acks[0].ref !== "anon1" || a.acks[0].error !== "unauthorized") die(`A: ${JSON.stringify(a.acks[0])}`);
  if (b.acks[0].ref !== "blank" || b.acks[0].error !== "bad_text") die(`B: ${JSON.stringify(b.acks[0])}`);
  if (b.acks[1].ref !== "long" || b.acks[1].error !== "bad_text") die(`B: ${JSON.stringify(b.acks[1])}`);
  log(`refusals: ${JSON.stringify(a.acks[0])} ${JSON.stringify(b.acks[0])} ${JSON.stringify(b.acks[1])}`);
  b.acks.length = 0;

  // 2. Poster C on instance 1 posts COUNT comments back to back (pipelined, no waiting).
  const c = new RawClient("C@1", PEER1, { stream: STREAM, user: "poster-c" });
  await c.until("init", () => c.init);
  const texts = [];
  for (let i = 1; i <= COUNT; i++) {
    const text = i === 7 ? `  comment ${i} 🎉 with spaces  ` : `comment ${i} ${"あ".repeat(i % 3)}`;
    texts.push(text.trim());
    c.emit("comment", { text, ref: `c${i}` });
  }
  await c.until(`${COUNT} acks`, () => c.acks.length === COUNT);
  const postedIds = [];
  for (let i = 0; i < COUNT; i++) {
    const ack = c.acks[i];
    if (ack.ref !== `c${i + 1}` || typeof ack.id !== "string" || ack.error) die(`C: ack #${i} ${JSON.stringify(ack)}`);
    postedIds.push(ack.id);
  }
  log(`C got ${COUNT} acks, ids ${postedIds[0]} .. ${postedIds[COUNT - 1]}`);

  // 3. Both viewers (and the sender) get every comment exactly once, in id order.
  await a.until(`${COUNT} comments`, () => a.comments.length >= COUNT);
  await b.until(`${COUNT} comments`, () => b.comments.length >= COUNT);
  await c.until(`${COUNT} comments`, () => c.comments.length >= COUNT);
  await sleep(500); // let any duplicate show up
  checkLive("A@1", a, postedIds, texts);
  checkLive("B@2", b, postedIds, texts);
  checkLive("C@1 (sender)", c, postedIds, texts);
  const lat = b.comments.map((x) => x.ts);
  log(`A@1, B@2 and C@1 each got all ${COUNT} comments exactly once, in id order, with ts (${lat[0]} .. ${lat[lat.length - 1]})`);
  const firstAck = c.events.findIndex(([e]) => e === "ack");
  const firstOwn = c.events.findIndex(([e]) => e === "comments");
  log(`sender frame order: first ack at event #${firstAck}, first own comments frame at event #${firstOwn}`);

  // 4. A viewer joining afterwards gets them in init (the last INIT_COMMENTS, oldest first).
  const d = new RawClient("D@2", PEER2, { stream: STREAM, user: "late-d" });
  await d.until("init", () => d.init);
  const initIds = d.init.comments.map((x) => x.id);
  const expectTail = postedIds.slice(Math.max(0, COUNT - INIT_COMMENTS));
  if (initIds.length > INIT_COMMENTS) die(`D: init has ${initIds.length} comments > INIT_COMMENTS ${INIT_COMMENTS}`);
  const tail = initIds.slice(initIds.length - expectTail.length);
  if (tail.join(",") !== expectTail.join(",")) die(`D: init ids ${initIds.join(",")} do not end with the posted ${expectTail.join(",")}`);
  for (let i = 1; i < initIds.length; i++) if (cmpId(initIds[i - 1], initIds[i]) >= 0) die(`D: init not oldest first`);
  d.init.comments.forEach((x) => checkComment("D", x, STREAM));
  const initTexts = d.init.comments.slice(initIds.length - expectTail.length).map((x) => x.text);
  if (initTexts.join("\n") !== texts.slice(texts.length - expectTail.length).join("\n")) die("D: init texts differ from the posted ones");
  log(`D@2 init: ${initIds.length} comments, oldest first, ending with the ${expectTail.length} posted`);
  log(`D@2 init first comment: ${JSON.stringify(d.init.comments[initIds.length - expectTail.length])}`);

  for (const x of [a, b, c, d]) x.close();
  log("OK");
  process.exit(0);
}

main().catch((err) => die(err && err.stack ? err.stack : String(err)));
