// The streamer's toolbox through the library, against the real danmaku binary: settings in
// `init` and pushed, the new refusals as typed errors, held posts and their fate, deleting.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Blocked, Forbidden, NotFound, RoleRequired, SlowMode } from "../src/index.js";
import { api, history, postSystem, sign, startServer, until, watch } from "./support.js";

describe("the streamer's toolbox", () => {
  let server;
  const open = [];
  const viewer = (stream, options) => {
    const v = watch(server.ws, stream, options);
    open.push(v.stream);
    return v;
  };

  before(async () => {
    server = await startServer();
  });
  after(async () => {
    for (const s of open) s.close();
    await server.stop();
  });

  test("settings come with init and on every change; slow mode and roles reject typed", async () => {
    const v = viewer("tb-settings", { token: sign({ sub: "ann" }) });
    await v.live();
    assert.deepEqual(v.stream.settings, { slow_mode_ms: 0, post_roles: [], pinned: null });
    const pin = await postSystem(server, "tb-settings", "welcome");
    const patch = { slow_mode_ms: 5000, pinned: pin.id };
    assert.equal((await api(server, "PATCH", "/v1/streams/tb-settings/settings", patch)).status, 200);
    await until("the settings event", () => v.seen.settings.some((s) => s.slow_mode_ms === 5000));
    assert.equal(v.stream.settings.pinned, pin.id);

    await v.stream.post("first");
    const slowed = await v.stream.post("second").catch((e) => e);
    assert.ok(slowed instanceof SlowMode, String(slowed));
    assert.ok(slowed.retryAfterMs > 0 && slowed.retryAfterMs <= 5000, String(slowed.retryAfterMs));
    assert.ok(slowed.retryAt > Date.now());

    const roles = { slow_mode_ms: 0, post_roles: ["vip"] };
    assert.equal((await api(server, "PATCH", "/v1/streams/tb-settings/settings", roles)).status, 200);
    await until("the roles", () => v.stream.settings.post_roles.length === 1);
    await assert.rejects(v.stream.post("may I?"), (e) => e instanceof RoleRequired && e.code === "role_required");
    const vip = viewer("tb-settings", { token: sign({ sub: "vee", roles: ["vip"] }) });
    await vip.live();
    assert.deepEqual(vip.stream.settings.post_roles, ["vip"], "a later init carries them");
    assert.match(await vip.stream.post("I may"), /^\d+-\d+$/);
  });

  test("blocked terms reject; a held post resolves {held, id} and its author learns its fate", async () => {
    const terms = [{ term: "spam", action: "refuse" }, { term: "link", action: "hold" }];
    assert.equal((await api(server, "PUT", "/v1/streams/tb-held/terms", { terms })).status, 200);
    const author = viewer("tb-held", { token: sign({ sub: "carl" }) });
    const moderator = viewer("tb-held", { token: sign({ sub: "mod", mod: ["tb-held"] }) });
    await author.live();
    await moderator.live();
    await assert.rejects(author.stream.post("ＳＰＡＭ"), (e) => e instanceof Blocked && !/spam/i.test(e.message));

    const held = await author.stream.post("my link");
    assert.equal(held.held, true);
    assert.match(held.id, /^\d+-\d+$/);
    await until("the held event", () => moderator.seen.held.length === 1);
    assert.equal(moderator.seen.held[0].comment.id, held.id);
    const approved = await api(server, "POST", `/v1/streams/tb-held/held/${held.id}/approve`);
    assert.equal(approved.status, 201);
    await until("released", () => author.seen.released.length === 1);
    assert.deepEqual(author.seen.released[0], { heldId: held.id, id: approved.body.comment.id });
    await until("the approved comment", () => author.texts().includes("my link"));

    const second = await author.stream.post("another link");
    assert.equal((await api(server, "DELETE", `/v1/streams/tb-held/held/${second.id}`)).status, 204);
    await until("dropped", () => author.seen.dropped.length === 1);
    assert.deepEqual(author.seen.dropped[0], { heldId: second.id });
  });

  test("stream.delete removes one's own comment; others' are Forbidden, unknown ones NotFound", async () => {
    const author = viewer("tb-delete", { token: sign({ sub: "dana" }) });
    const other = viewer("tb-delete", { token: sign({ sub: "eve" }) });
    await author.live();
    await other.live();
    const id = await author.stream.post("oops");
    await until("the comment", () => other.texts().includes("oops"));
    await assert.rejects(other.stream.delete(id), (e) => e instanceof Forbidden);
    await assert.rejects(author.stream.delete("1-0"), (e) => e instanceof NotFound);
    assert.equal(await author.stream.delete(id), id);
    await until("the deletion", () => other.seen.deleted.includes(id));
    assert.deepEqual((await history(server, "tb-delete")).map((c) => c.id), []);
  });
});
