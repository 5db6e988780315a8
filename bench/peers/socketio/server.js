#!/usr/bin/env node
// Socket.IO 4 benchmark peer for danmaku: the same scenario semantics (join a stream,
// get recent history in `init`, post comments that fan out to every viewer of the
// stream on every instance) on Socket.IO + the sharded Redis adapter + a Redis Cluster.
// ADAPTER=classic swaps in Socket.IO's classic Redis adapter instead (PUBLISH to the
// cluster, every instance PSUBSCRIBEd to every room: each instance receives every stream's
// comments, viewers or not), the "before" of the fleet benchmark.
// See README.md for the wire format the load generator relies on.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter, createShardedAdapter } = require("@socket.io/redis-adapter");
const { createClient, createCluster } = require("redis");

// ---------------------------------------------------------------------------- config

function fail(message, code = 1) {
  process.stderr.write(`socketio peer: ${message}\n`);
  process.exit(code);
}

function intEnv(name, fallback, min) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) fail(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`, 2);
  return n;
}

const HOST = process.env.HOST || "127.0.0.1";
const ADAPTER = process.env.ADAPTER || "sharded";
if (!["sharded", "classic"].includes(ADAPTER)) fail(`ADAPTER must be sharded or classic, got ${JSON.stringify(ADAPTER)}`, 2);
if (!process.env.PORT) fail("PORT is required", 2);
const PORT = intEnv("PORT", 0, 1);
if (PORT > 65535) fail(`PORT out of range: ${PORT}`, 2);
const INIT_COMMENTS = intEnv("INIT_COMMENTS", 50, 0);
const HISTORY_LEN = intEnv("HISTORY_LEN", 200, 1);
const REDIS_CONNECT_TIMEOUT_MS = intEnv("REDIS_CONNECT_TIMEOUT_MS", 15000, 1);

const REDIS_CLUSTER = (process.env.REDIS_CLUSTER || "").trim();
if (!REDIS_CLUSTER) fail("REDIS_CLUSTER is required (comma-separated host:port seed nodes)", 2);
const rootNodes = REDIS_CLUSTER.split(",")
  .map((s) => s.trim())
  .filter(Boolean)
  .map((seed) => {
    const m = /^(.+):(\d{1,5})$/.exec(seed);
    if (!m) fail(`REDIS_CLUSTER: bad seed ${JSON.stringify(seed)} (want host:port)`, 2);
    return { url: `redis://${m[1]}:${m[2]}` };
  });

const STREAM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_TEXT_CHARS = 200;
const MAX_USER_CHARS = 64;

const histKey = (stream) => `peer:{${stream}}:hist`;
const roomOf = (stream) => `stream:${stream}`;

// ----------------------------------------------------------------------------- logging

// Redis client errors can repeat in a tight loop while a node is down: log at most one
// line per kind per second.
const lastLogged = new Map();
function logError(kind, err) {
  const now = Date.now();
  if (now - (lastLogged.get(kind) || 0) < 1000) return;
  lastLogged.set(kind, now);
  const msg = err && err.message ? err.message : String(err);
  process.stderr.write(`socketio peer: ${kind}: ${msg}\n`);
}

process.on("unhandledRejection", (err) => logError("unhandled rejection", err));

// ------------------------------------------------------------------------------- redis

let started = false;
const pub = createCluster({
  rootNodes,
  defaults: {
    socket: {
      connectTimeout: 5000,
      // Before startup finishes, give up quickly so a missing cluster is a clear exit;
      // afterwards keep reconnecting with a capped back-off.
      reconnectStrategy: (retries) =>
        !started && retries >= 3 ? new Error("Redis node unreachable") : Math.min(50 + retries * 100, 2000),
    },
  },
});
const sub = pub.duplicate();
pub.on("error", (err) => logError("redis pub client", err));
sub.on("error", (err) => logError("redis sub client", err));

// The classic adapter's own pair: plain connections to the first seed node. Classic Pub/Sub
// in a cluster reaches every node over the cluster bus, so one node is enough; publishing
// through the cluster client instead spreads one stream's PUBLISHes over the masters, whose
// forwarding reorders them.
const classicPub = ADAPTER === "classic" ? createClient({ url: rootNodes[0].url }) : null;
const classicSub = classicPub ? classicPub.duplicate() : null;
classicPub?.on("error", (err) => logError("redis classic pub client", err));
classicSub?.on("error", (err) => logError("redis classic sub client", err));

// The sharded adapter subscribes to a room's channel (SSUBSCRIBE) when the room is first
// created on this instance, but it fires the command and forgets the promise. Record the
// promise so a connection can wait until the subscription is live before it reads history
// (otherwise a comment published on another instance in that window is lost), and so a
// failed (un)subscribe is logged instead of becoming an unhandled rejection.
const pendingSubs = new Map(); // channel -> Promise
{
  const sSubscribe = sub.sSubscribe.bind(sub);
  const sUnsubscribe = sub.sUnsubscribe.bind(sub);
  sub.sSubscribe = (channels, listener, bufferMode) => {
    const p = Promise.resolve()
      .then(() => sSubscribe(channels, listener, bufferMode))
      .catch((err) => logError(`SSUBSCRIBE ${channels}`, err));
    for (const ch of Array.isArray(channels) ? channels : [channels]) {
      pendingSubs.set(ch, p);
      p.then(() => {
        if (pendingSubs.get(ch) === p) pendingSubs.delete(ch);
      });
    }
    return p;
  };
  sub.sUnsubscribe = (channels, listener, bufferMode) =>
    Promise.resolve()
      .then(() => sUnsubscribe(channels, listener, bufferMode))
      .catch((err) => logError(`SUNSUBSCRIBE ${channels}`, err));
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ------------------------------------------------------------------------- validation

const codePoints = (s) => {
  let n = 0;
  for (const _ of s) n++; // eslint-disable-line no-unused-vars
  return n;
};

function parseAuth(auth) {
  if (!auth || typeof auth !== "object") return null;
  const { stream, user } = auth;
  if (typeof stream !== "string" || !STREAM_RE.test(stream)) return null;
  if (user === undefined || user === null) return { stream, user: null };
  if (typeof user !== "string" || user.length === 0 || codePoints(user) > MAX_USER_CHARS) return null;
  return { stream, user };
}

function parseComment(entry) {
  const comment = JSON.parse(entry.message.c);
  return { id: entry.id, ...comment };
}

// ---------------------------------------------------------------------------- socket.io

function attach(httpServer) {
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    // PER_MESSAGE_DEFLATE=<threshold bytes>: permessage-deflate as Socket.IO offers it (ws's,
    // one compressor per socket, run on libuv's thread pool); unset: off, Socket.IO's default.
    perMessageDeflate: process.env.PER_MESSAGE_DEFLATE
      ? { threshold: Number(process.env.PER_MESSAGE_DEFLATE) }
      : false,
    adapter:
      ADAPTER === "classic"
        ? createAdapter(classicPub, classicSub)
        : createShardedAdapter(pub, sub, { subscriptionMode: "dynamic" }),
  });

  io.use((socket, next) => {
    const auth = parseAuth(socket.handshake.auth);
    if (!auth) return next(new Error("bad_request"));
    socket.data.stream = auth.stream;
    socket.data.user = auth.user; // null: anonymous viewer
    socket.data.viewer = auth.user ?? `anon-${socket.id}`;
    next();
  });

  io.on("connection", (socket) => {
    const stream = socket.data.stream;
    const room = roomOf(stream);

    // Registered synchronously so a post sent right after CONNECT is not dropped.
    socket.on("comment", (payload) => onComment(io, socket, payload));

    // 1. join first: from here on, live comments reach this socket ...
    socket.join(room);
    // ... once the adapter's SSUBSCRIBE for the room (if it just created it) is live.
    const subscribed = pendingSubs.get(io.of("/").adapter.channel + room + "#");

    (async () => {
      if (subscribed) await subscribed;
      // 2. then read history (a comment that lands in between may be both in `init` and
      // in a `comments` frame: a duplicate, never a gap).
      let comments = [];
      try {
        const entries = INIT_COMMENTS > 0 ? await pub.xRevRange(histKey(stream), "+", "-", { COUNT: INIT_COMMENTS }) : [];
        comments = entries.reverse().map(parseComment);
      } catch (err) {
        logError(`history read for ${stream}`, err);
      }
      // 3. init
      socket.emit("init", { stream_id: stream, comments, viewer_count: 0 });
    })().catch((err) => logError("connection", err));
  });

  return io;
}

async function onComment(io, socket, payload) {
  const ref = payload && typeof payload === "object" && typeof payload.ref === "string" ? payload.ref : null;
  const user = socket.data.user;
  if (user === null) return socket.emit("ack", { ref, error: "unauthorized" });
  const raw = payload && typeof payload === "object" ? payload.text : undefined;
  const text = typeof raw === "string" ? raw.trim() : "";
  const n = codePoints(text);
  if (n < 1 || n > MAX_TEXT_CHARS) return socket.emit("ack", { ref, error: "bad_text" });

  const stream = socket.data.stream;
  const comment = {
    id: null,
    stream_id: stream,
    user: { id: user, name: user },
    kind: "user",
    text,
    data: null,
    ts: Date.now(),
  };
  try {
    const { id: _omit, ...stored } = comment; // eslint-disable-line no-unused-vars
    comment.id = await pub.xAdd(
      histKey(stream),
      "*",
      { c: JSON.stringify(stored) },
      { TRIM: { strategy: "MAXLEN", strategyModifier: "~", threshold: HISTORY_LEN } },
    );
  } catch (err) {
    logError(`XADD for ${stream}`, err);
    return socket.emit("ack", { ref, error: "unavailable" });
  }
  // Everyone in the room, the sender included; the sharded adapter SPUBLISHes it to the
  // other instances and delivers locally once the SPUBLISH has returned.
  io.to(roomOf(stream)).emit("comments", { comments: [comment] });
  socket.emit("ack", { ref, id: comment.id });
}

// -------------------------------------------------------------------------------- main

async function main() {
  try {
    const clients = [pub, sub, classicPub, classicSub].filter(Boolean);
    await withTimeout(Promise.all(clients.map((c) => c.connect())), REDIS_CONNECT_TIMEOUT_MS, "connecting");
  } catch (err) {
    fail(`cannot reach the Redis Cluster at ${REDIS_CLUSTER}: ${err && err.message ? err.message : err}`);
  }
  started = true;

  const httpServer = http.createServer((req, res) => {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  });
  const io = attach(httpServer);

  httpServer.on("error", (err) => fail(`cannot listen on ${HOST}:${PORT}: ${err.message}`));
  httpServer.listen(PORT, HOST, () => {
    process.stdout.write(`socketio peer listening on http://${HOST}:${PORT}\n`);
  });

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 5000).unref();
    try {
      await io.close();
    } catch (err) {
      logError("closing socket.io", err);
    }
    await Promise.allSettled([pub, sub, classicPub, classicSub].filter(Boolean).map((c) => c.quit()));
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main();
