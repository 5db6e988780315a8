// The real danmaku binary in development mode (`--dev`, the embedded broker) on a free
// 127.0.0.1 port, its HTTP API, and WebSocket clients (the `ws` package) that record every
// frame they send and receive.
import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
export const SERVICE_TOKEN = "asyncapi-tests-service-token";

/** The binary: $DANMAKU_BIN, else the newer of the release and the debug build. */
export function binary() {
  if (process.env.DANMAKU_BIN) return process.env.DANMAKU_BIN;
  const found = [`${repo}/target/release/danmaku`, `${repo}/target/debug/danmaku`]
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!found) throw new Error("no danmaku binary: run `cargo build` (or set DANMAKU_BIN)");
  return found;
}

/** Polls `check` until it returns a truthy value; throws naming `what`. */
export async function until(what, check, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Starts `danmaku --dev` with `env`; resolves once it says where it listens. */
export async function startServer(env = {}) {
  const bin = binary();
  const child = spawn(bin, ["--dev"], {
    env: {
      PATH: process.env.PATH,
      DANMAKU_LISTEN: "127.0.0.1:0",
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
    child.once("error", (error) => reject(new Error(`cannot start ${bin}: ${error.message}`)));
  });
  return {
    bin,
    http,
    ws: http.replace(/^http/, "ws"),
    exited,
    stderr: () => stderr,
    signal: (sig) => child.kill(sig),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** An HTTP call; `bearer` defaults to the service token. Resolves to {status, body}. */
export async function api(server, method, path, body, bearer = SERVICE_TOKEN) {
  const headers = { "content-type": "application/json" };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const response = await fetch(`${server.http}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** A development token (`POST /dev/token`) for the user `dev-<name>`. */
export async function devToken(server, name, moderates) {
  const body = moderates ? { name, stream: moderates, moderate: true } : { name };
  const { status, body: answer } = await api(server, "POST", "/dev/token", body, null);
  if (status !== 200) throw new Error(`POST /dev/token: ${status} ${JSON.stringify(answer)}`);
  return answer;
}

/**
 * A WebSocket client whose every frame goes into `recording` as
 * {client, dir: "sent"|"received", text, malformed?}; `onFrame` sees each as it happens.
 */
export class Client {
  constructor(label, ws, recording, onFrame) {
    this.label = label;
    this.ws = ws;
    this.recording = recording;
    this.onFrame = onFrame;
    this.frames = [];
    this.closed = new Promise((r) => ws.once("close", (code, reason) => r({ code, reason: String(reason) })));
    ws.on("upgrade", (response) => {
      this.upgrade = response;
    });
    ws.on("message", (data, isBinary) => {
      const entry = { client: label, dir: "received", text: String(data), binary: isBinary };
      recording.push(entry);
      let frame;
      try {
        frame = JSON.parse(entry.text);
      } catch {
        frame = undefined;
      }
      onFrame(entry, frame);
      this.frames.push({ frame, taken: false });
    });
  }

  /** Connects to `stream` (`token` in the Authorization header, or as `access_token` with
   *  `inQuery`) and waits for `init`. */
  static async open(server, label, { stream, token, inQuery = false, query = {} }, recording, onFrame) {
    const params = new URLSearchParams(query);
    if (token && inQuery) params.set("access_token", token);
    const qs = params.toString();
    const url = `${server.ws}/v1/streams/${stream}/ws${qs ? `?${qs}` : ""}`;
    const headers = token && !inQuery ? { authorization: `Bearer ${token}` } : {};
    const ws = new WebSocket(url, { headers });
    const client = new Client(label, ws, recording, onFrame);
    await new Promise((resolvePromise, reject) => {
      ws.once("open", resolvePromise);
      ws.once("error", reject);
      ws.once("unexpected-response", (_, res) => reject(new Error(`${label}: handshake answered ${res.statusCode}`)));
    });
    client.init = await client.next("init");
    return client;
  }

  /** Sends `frame` (an object, or raw text); `malformed` marks a frame sent to be refused. */
  send(frame, { malformed = false } = {}) {
    const text = typeof frame === "string" ? frame : JSON.stringify(frame);
    const entry = { client: this.label, dir: "sent", text, malformed };
    this.recording.push(entry);
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    this.onFrame(entry, parsed);
    this.ws.send(text);
  }

  /** The first frame not yet taken of one of `types` for which `pred` holds; waits for it. */
  async next(types, pred = () => true, timeoutMs = 5000) {
    const wanted = [types].flat();
    const found = await until(`${this.label}: a ${wanted.join("/")} frame`, () => {
      const hit = this.frames.find((f) => !f.taken && f.frame && wanted.includes(f.frame.type) && pred(f.frame));
      if (hit) hit.taken = true;
      return hit;
    }, timeoutMs).catch((error) => {
      const last = this.frames.slice(-5).map((f) => JSON.stringify(f.frame)).join("\n  ");
      throw new Error(`${error.message}; its last frames:\n  ${last}`);
    });
    return found.frame;
  }

  /** Sends `frame` and waits for its answer: the ack/error with its `ref` when it has one,
   *  else the next answer of any kind. */
  async ask(frame, options) {
    this.send(frame, options);
    const ref = typeof frame === "object" ? frame.ref : undefined;
    const pred = ref === undefined ? () => true : (f) => f.ref === ref;
    return this.next(["ack", "error", "pong", "refreshed"], pred);
  }

  close() {
    this.ws.close();
  }
}
