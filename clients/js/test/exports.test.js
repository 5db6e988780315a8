// The hand-written types and the code agree on what the package exports: every class and
// function index.d.ts declares exists in index.js with the same kind, and nothing else is
// exported. (tsc --noEmit checks the types against test/usage.ts; this checks them against
// the code.)
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as lib from "../src/index.js";

test("index.d.ts declares exactly what index.js exports", () => {
  const dts = readFileSync(new URL("../src/index.d.ts", import.meta.url), "utf8");
  const declared = [...dts.matchAll(/^export declare (class|function) (\w+)/gm)].map(([, kind, name]) => ({ kind, name }));
  assert.ok(declared.length >= 10, `${declared.length} declarations`);
  for (const { kind, name } of declared) {
    assert.equal(typeof lib[name], "function", `${name} is exported`);
    const isClass = /^class\b/.test(Function.prototype.toString.call(lib[name]));
    assert.equal(isClass, kind === "class", `${name} is a ${kind}`);
  }
  assert.deepEqual(Object.keys(lib).sort(), declared.map((d) => d.name).sort());
});

test("every error class is a DanmakuError with its contract code", () => {
  const codes = { RateLimited: "rate_limited", TooLong: "too_long", Banned: "banned", Unauthorized: "unauthorized",
    Invalid: "invalid", Timeout: "timeout", Closed: "closed", SlowMode: "slow_mode", RoleRequired: "role_required",
    Blocked: "blocked", Forbidden: "forbidden", NotFound: "not_found" };
  const waits = ["RateLimited", "SlowMode"];
  for (const [name, code] of Object.entries(codes)) {
    const error = waits.includes(name) ? new lib[name]("m", 10) : new lib[name]("m");
    assert.ok(error instanceof lib.DanmakuError && error instanceof Error, name);
    assert.equal(error.code, code);
    assert.equal(error.name, name);
  }
  for (const [name, code] of Object.entries(codes).filter(([n]) => !["Timeout", "Closed"].includes(n))) {
    const error = lib.errorFromFrame({ type: "error", code, message: "m", ref: "r1", retry_after_ms: 1500 });
    assert.equal(error.constructor.name, name);
    assert.equal(error.ref, "r1");
  }
  assert.equal(lib.errorFromFrame({ code: "rate_limited", message: "m", retry_after_ms: 1500 }).retryAfterMs, 1500);
  assert.equal(lib.errorFromFrame({ code: "slow_mode", message: "m", retry_after_ms: 2500 }).retryAfterMs, 2500);
  const other = lib.errorFromFrame({ code: "internal", message: "m" });
  assert.equal(other.constructor, lib.DanmakuError);
  assert.equal(other.code, "internal");
});

test("comment ids order by (ms, seq) as numbers, not as strings", () => {
  assert.ok(lib.compareIds("9-0", "10-0") < 0);
  assert.ok(lib.compareIds("10-2", "10-10") < 0);
  assert.equal(lib.compareIds("5-5", "5-5"), 0);
  assert.ok(lib.compareIds("1732240000001-0", "1732240000000-9") > 0);
});
