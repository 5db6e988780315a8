// What the tests start and talk to: the real `danmaku` binary (on a free 127.0.0.1 port),
// a real redis-server, a TCP proxy that plays the load balancer, and HS256 tokens.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import net from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

import { connect } from "../src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../../..");
export const SECRET = "danmaku-client-tests-secret-0123456789";
export const SERVICE_TOKEN = "client-tests-service-token";

/** The binary: $DANMAKU_BIN, else the newer of the release and the debug build. */
export function binary() {
  if (process.env.DANMAKU_BIN) return process.env.DANMAKU_BIN;
  const found = [`${repo}/target/release/danmaku`, `${repo}/target/debug/danmaku`]
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!found) throw new Error("no danmaku binary: run `cargo build` (or set DANMAKU_BIN)");
  return found;
}

/** Polls `check` (sync or async) until it returns a truthy value; throws naming `what`. */
export async function until(what, check, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts danmaku with `env` on a free port; resolves once it says where it listens. */
export async function startServer(env = {}) {
  const child = spawn(binary(), [], {
    env: {
      PATH: process.env.PATH,
      DANMAKU_LISTEN: "127.0.0.1:0",
      DANMAKU_JWT_SECRET: SECRET,
      DANMAKU_SERVICE_TOKENS: SERVICE_TOKEN,
      RUST_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
  const http = await new Promise((resolvePromise, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /danmaku listening on (http:\/\/\S+)/.exec(out);
      if (m) resolvePromise(m[1]);
    });
    exited.then(({ code }) => reject(new Error(`danmaku exited (${code}) before listening:\n${stderr}`)));
    // A binary that cannot be started (gone, not executable) emits `error`, never `exit`.
    child.once("error", (error) => reject(new Error(`cannot start ${binary()}: ${error.message}`)));
  });
  return {
    http,
    ws: http.replace(/^http/, "ws"),
    port: Number(new URL(http).port),
    exited,
    stderr: () => stderr,
    signal: (sig) => child.kill(sig),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** A free 127.0.0.1 port (bound and released). */
export async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** Debian's redis-server on a free port, without persistence. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn("/usr/bin/redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: "ignore" });
  const exited = new Promise((r) => child.once("exit", r));
  await until("redis-server to answer PING", () => new Promise((r) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write("PING\r\n"));
    socket.on("data", (d) => { socket.destroy(); r(String(d).startsWith("+PONG")); });
    socket.on("error", () => r(false));
  }));
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** A TCP proxy standing in for a load balancer: new connections go to `target()`'s port.
 *  `freeze()` stops forwarding on the connections it has (a path gone dead without a close). */
export async function startProxy(target) {
  const pairs = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target(), "127.0.0.1");
    const pair = [client, upstream];
    pairs.add(pair);
    for (const s of pair) {
      s.on("close", () => pairs.delete(pair));
      s.on("error", () => { client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    ws: `ws://127.0.0.1:${server.address().port}`,
    freeze() {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    async stop() {
      for (const pair of pairs) pair.forEach((s) => s.destroy());
      await new Promise((r) => server.close(r));
    },
  };
}

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** An HS256 JWT for `claims` (exp defaults to an hour from now). */
export function sign(claims) {
  const body = { exp: Math.floor(Date.now() / 1000) + 3600, ...claims };
  const unsigned = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(body)}`;
  return `${unsigned}.${createHmac("sha256", SECRET).update(unsigned).digest("base64url")}`;
}

/** Calls the service API; resolves to {status, body}. */
export async function api(server, method, path, body) {
  const response = await fetch(`${server.http}${path}`, {
    method,
    headers: { authorization: `Bearer ${SERVICE_TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

export async function postSystem(server, stream, text) {
  const { status, body } = await api(server, "POST", `/v1/streams/${stream}/comments`, { kind: "system", text });
  if (status !== 201) throw new Error(`POST comment: ${status} ${JSON.stringify(body)}`);
  return body.comment;
}

export async function history(server, stream) {
  return (await api(server, "GET", `/v1/streams/${stream}/comments?limit=500`)).body.comments;
}

/** Connects with `ws` and records everything the app would see. */
export function watch(url, stream, options = {}) {
  const s = connect(url, stream, { WebSocket, ...options });
  const seen = { comments: [], skipped: 0, states: [], resets: 0, deleted: [], viewers: [], errors: [], frames: [],
    settings: [], held: [], released: [], dropped: [] };
  s.on("comments", (e) => { seen.comments.push(...e.comments); seen.skipped += e.skipped; });
  s.on("state", (e) => seen.states.push(e));
  s.on("reset", () => { seen.resets += 1; seen.comments.length = 0; });
  s.on("deleted", (e) => seen.deleted.push(...e.ids));
  s.on("viewers", (e) => seen.viewers.push(e.count));
  s.on("error", (e) => seen.errors.push(e));
  s.on("frame", (f) => seen.frames.push(f));
  for (const event of ["settings", "held", "released", "dropped"]) s.on(event, (e) => seen[event].push(e));
  const texts = () => seen.comments.map((c) => c.text);
  const live = (n = 1) => until(`live #${n}`, () => seen.states.filter((x) => x.state === "live").length >= n);
  return { stream: s, seen, texts, live };
}
