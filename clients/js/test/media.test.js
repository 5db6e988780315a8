// Media time through the library, against the real danmaku binary: two players at delays
// 0 and 10 s each get a comment when their clock reaches its moment; a scrub backwards
// replays the chat on the clock; the hold bound lets a comment out late, counted.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { sign, startServer, until, watch } from "./support.js";

describe("media time", () => {
  let server;
  const open = [];
  const player = (stream, delayMs, options = {}) => {
    // A player `delayMs` behind live (its program date time), or at a moment the test moves.
    const clock = { offset: -delayMs, frozen: null }; // frozen: a paused player's moment
    const arrivals = []; // [comment, wall ms at emission]
    const v = watch(server.ws, stream, { mediaClock: () => clock.frozen ?? Date.now() + clock.offset, ...options });
    v.stream.on("comments", ({ comments, replay }) => {
      for (const c of comments) arrivals.push({ c, at: Date.now(), replay: replay === true });
    });
    open.push(v.stream);
    return { ...v, clock, arrivals };
  };

  before(async () => {
    server = await startServer();
  });
  after(async () => {
    for (const s of open) s.close();
    await server.stop();
  });

  test("two players 10 s apart each see a comment when their clock reaches its moment", async () => {
    const author = player("md-live", 0, { token: sign({ sub: "author" }) });
    const live = player("md-live", 0);
    const behind = player("md-live", 10000);
    await Promise.all([author.live(), live.live(), behind.live()]);
    const posted = Date.now();
    const id = await author.stream.post("goal!");
    const moment = posted; // the author's clock is live: media_ts ≈ now
    await until("the live player", () => live.arrivals.some((a) => a.c.id === id));
    const seenLive = live.arrivals.find((a) => a.c.id === id);
    assert.ok(Math.abs(seenLive.c.media_ts - moment) < 200, `media_ts ${seenLive.c.media_ts} vs ${moment}`);
    assert.ok(seenLive.at - seenLive.c.media_ts <= 300, `live late by ${seenLive.at - seenLive.c.media_ts} ms`);
    await until("held by the delayed player", () => behind.stream.mediaStats.held === 1, 2000);
    assert.equal(behind.arrivals.some((a) => a.c.id === id), false, "not yet for the delayed player");
    await until("the delayed player", () => behind.arrivals.some((a) => a.c.id === id), 15000);
    const seenBehind = behind.arrivals.find((a) => a.c.id === id);
    const atItsMoment = seenBehind.at - 10000 - seenBehind.c.media_ts;
    assert.ok(atItsMoment >= -100 && atItsMoment <= 100, `off its moment by ${atItsMoment} ms`);
    assert.equal(behind.stream.mediaStats.late, 0);
  });

  test("a scrub backwards replays the chat on the clock; comments come in media order", async () => {
    const author = player("md-vod", 0, { token: sign({ sub: "author" }) });
    await author.live();
    const start = Date.now();
    await author.stream.post("one");
    await new Promise((r) => setTimeout(r, 300));
    await author.stream.post("two");
    const vod = player("md-vod", 0);
    await vod.live();
    vod.arrivals.length = 0;
    vod.clock.offset = start - 100 - Date.now(); // scrub back to just before "one"
    const replayed = await vod.stream.replay(start - 1000, start + 5000);
    assert.deepEqual(replayed.map((c) => c.text), ["one", "two"]);
    await until("the replay", () => vod.arrivals.length >= 2, 5000);
    const [one, two] = vod.arrivals;
    assert.deepEqual([one.c.text, two.c.text, one.replay, two.replay], ["one", "two", true, true]);
    const gap = two.at - one.at;
    assert.ok(gap >= 150 && gap <= 500, `${gap} ms between them, as between their moments`);
    // Replaying the same span again does not repeat what still waits.
    vod.clock.offset = start - 5000 - Date.now();
    await vod.stream.replay(start - 1000, start + 5000);
    await vod.stream.replay(start - 1000, start + 5000);
    assert.equal(vod.stream.mediaStats.held, 2);
  });

  test("a comment held longer than maxHoldMs comes out at once, counted late", async () => {
    const author = player("md-hold", 0, { token: sign({ sub: "author" }) });
    const far = player("md-hold", 0, { maxHoldMs: 1000 });
    await Promise.all([author.live(), far.live()]);
    far.clock.offset = -5000; // the player fell 5 s behind: more than it may hold
    const id = await author.stream.post("now");
    await until("the late comment", () => far.arrivals.some((a) => a.c.id === id), 3000);
    assert.equal(far.stream.mediaStats.late, 1);
    assert.equal(far.stream.mediaStats.held, 0);
  });

  test("past maxHeld waiting, the oldest comes out at once, counted late", async () => {
    const author = player("md-count", 0, { token: sign({ sub: "author" }) });
    const behind = player("md-count", 5000, { maxHeld: 2 });
    await Promise.all([author.live(), behind.live()]);
    const ids = [];
    for (const text of ["a", "b", "c"]) ids.push(await author.stream.post(text));
    await until("the first one, late", () => behind.arrivals.some((a) => a.c.id === ids[0]), 3000);
    assert.deepEqual(behind.stream.mediaStats, { held: 2, late: 1 });
    assert.equal(behind.arrivals.some((a) => a.c.id === ids[1] || a.c.id === ids[2]), false);
  });

  test("a paused player lets a held comment out after maxHoldMs, counted late", async () => {
    const author = player("md-pause", 0, { token: sign({ sub: "author" }) });
    const paused = player("md-pause", 1000, { maxHoldMs: 1500 });
    await Promise.all([author.live(), paused.live()]);
    paused.clock.frozen = Date.now() - 1000; // paused a second behind: its moment stays put
    const posted = Date.now();
    const id = await author.stream.post("while paused");
    await until("the comment held", () => paused.stream.mediaStats.held === 1, 1000);
    await until("the overdue comment", () => paused.arrivals.some((a) => a.c.id === id), 4000);
    const waited = paused.arrivals.find((a) => a.c.id === id).at - posted;
    assert.ok(waited >= 1400 && waited <= 2200, `let out after ${waited} ms`);
    assert.deepEqual(paused.stream.mediaStats, { held: 0, late: 1 });
  });
});
