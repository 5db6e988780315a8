// WebSocket compression (permessage-deflate) with Node's `ws`, against the real danmaku
// binary: a viewer that offers it and one that does not receive the same frames; a poster
// whose every message is compressed is understood; the library works over it; and with
// DANMAKU_WS_COMPRESSION=off nothing is negotiated.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { postSystem, sign, startServer, until, watch } from "./support.js";

const sockets = [];

/** A raw `ws` client that keeps every frame after `init`. */
async function open(url, options) {
  const ws = new WebSocket(url, options);
  sockets.push(ws);
  const frames = [];
  let init = null;
  ws.on("message", (data) => {
    const frame = JSON.parse(data.toString());
    if (init === null && frame.type === "init") init = frame;
    else frames.push(frame);
  });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  await until("init", () => init !== null);
  return { ws, frames };
}

async function metrics(server) {
  return (await fetch(`${server.http}/metrics`)).text();
}

function metric(text, name) {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ").pop()) : NaN;
}

describe("compression", () => {
  let server;
  let off;
  before(async () => {
    // Twenty posts at once, none thinned: the rate limit and the viewers' budget out of the way.
    server = await startServer({ DANMAKU_RATE_PER_SEC: "1000", DANMAKU_RATE_BURST: "1000", DANMAKU_VIEWER_MAX_RATE: "0" });
    off = await startServer({ DANMAKU_WS_COMPRESSION: "off" });
  });
  after(async () => {
    for (const ws of sockets) ws.terminate();
    await server.stop();
    await off.stop();
  });

  test("compressed and plain viewers receive the same frames; compressed posts are taken", async () => {
    const url = `${server.ws}/v1/streams/zip/ws`;
    const deflated = await open(url, { perMessageDeflate: { threshold: 0 } });
    const plain = await open(url, { perMessageDeflate: false });
    assert.equal(deflated.ws.extensions, "permessage-deflate");
    assert.equal(plain.ws.extensions, "");

    const poster = await open(`${url}?access_token=${sign({ sub: "zipper" })}`, { perMessageDeflate: { threshold: 0 } });
    for (let i = 0; i < 20; i++) {
      poster.ws.send(JSON.stringify({ type: "comment", text: i === 19 ? "end" : `node ${i} ${"n".repeat(150)}`, ref: `r${i}` }));
    }
    await until("20 acks", () => poster.frames.filter((f) => f.type === "ack").length === 20);
    const ended = (v) => v.frames.some((f) => f.type === "comments" && f.comments.some((c) => c.text === "end"));
    await until("end reaches both", () => ended(deflated) && ended(plain));
    const comments = (v) => v.frames.filter((f) => f.type === "comments");
    assert.deepEqual(comments(deflated), comments(plain));
    assert.equal(comments(plain).flatMap((f) => f.comments).length, 20);

    const text = await metrics(server);
    assert.ok(metric(text, "danmaku_ws_frames_compressed_total") >= 1, text);
  });

  test("the library works over a compressed socket", async () => {
    const v = watch(server.ws, "zip-lib");
    try {
      await v.live();
      const before = metric(await metrics(server), "danmaku_ws_frames_compressed_total");
      await postSystem(server, "zip-lib", "s".repeat(200));
      await until("the long comment", () => v.texts().includes("s".repeat(200)));
      // Its frame went out compressed: the library's socket (ws's defaults) negotiated it.
      assert.equal(metric(await metrics(server), "danmaku_ws_frames_compressed_total"), before + 1);
    } finally {
      v.stream.close();
    }
  });

  test("DANMAKU_WS_COMPRESSION=off negotiates nothing", async () => {
    const v = await open(`${off.ws}/v1/streams/zip/ws`, { perMessageDeflate: { threshold: 0 } });
    assert.equal(v.ws.extensions, "");
  });
});
