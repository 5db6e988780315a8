// docs/asyncapi.yaml itself: valid AsyncAPI 3.0 (@asyncapi/parser: the specification's JSON
// Schema and its rules), consistent within (operations use their channel's messages, every
// message is used, one `type` per message), its examples valid against their own payloads,
// and its lists the server's: the frame types of src/domain/wire.rs, its error codes, and
// the close codes of src/ws/close.rs.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { Parser } from "@asyncapi/parser";

import { DOCUMENT_PATH, check, loadContract } from "./contract.js";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const source = (path) => readFileSync(resolve(repo, path), "utf8");
const contract = loadContract();

/** The `type` tags of a serde enum `name` in `code` (`#[serde(tag = "type",
 *  rename_all = "snake_case")]`, a variant's own `#[serde(rename = ...)]` honoured). */
function serdeTags(code, name) {
  const start = code.indexOf(`pub enum ${name}`);
  assert.ok(start >= 0, `enum ${name} in wire.rs`);
  const body = code.slice(code.indexOf("{", start) + 1, code.indexOf("\n}\n", start));
  const tags = new Set();
  let rename = null;
  for (const line of body.split("\n")) {
    const attr = /^ {4}#\[serde\(rename = "([^"]+)"\)\]/.exec(line);
    if (attr) rename = attr[1];
    const variant = /^ {4}([A-Z][A-Za-z]*)\b/.exec(line);
    if (variant) {
      tags.add(rename ?? variant[1].replace(/(?<!^)([A-Z])/g, "_$1").toLowerCase());
      rename = null;
    }
  }
  return tags;
}

const sorted = (set) => [...set].sort();

test("the AsyncAPI parser finds no error and no warning in it", async () => {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(contract.text, { source: DOCUMENT_PATH });
  // Severity 0 is an error, 1 a warning; 2 and 3 are hints (e.g. that 3.1.0 exists).
  const serious = diagnostics
    .filter((d) => d.severity <= 1)
    .map((d) => `${d.code} at ${d.path.join(".")}: ${d.message}`);
  assert.deepEqual(serious, []);
  assert.ok(document, "the parser made a document");
  assert.equal(document.version(), "3.0.0");
  assert.equal(document.channels().length, 1);
});

test("the parser refuses a broken copy (the check above can fail)", async () => {
  const broken = contract.text.replace("action: receive", "action: listen");
  assert.notEqual(broken, contract.text);
  const { document, diagnostics } = await new Parser().parse(broken);
  assert.equal(document, undefined);
  assert.ok(diagnostics.some((d) => d.severity === 0 && d.path.join(".").endsWith("action")));
});

test("operations use their own channel's messages, and every message is used", () => {
  const { doc } = contract;
  const used = new Set();
  for (const [id, operation] of Object.entries(doc.operations)) {
    const channel = operation.channel.$ref;
    const refs = [...operation.messages, ...(operation.reply?.messages ?? [])];
    for (const { $ref } of refs) {
      assert.ok($ref.startsWith(`${channel}/messages/`), `${id}: ${$ref} is not a message of ${channel}`);
      used.add($ref);
    }
    assert.ok(["send", "receive"].includes(operation.action), id);
  }
  for (const [name, channel] of Object.entries(doc.channels)) {
    for (const [key, message] of Object.entries(channel.messages)) {
      assert.ok(used.has(`#/channels/${name}/messages/${key}`), `no operation uses ${name}/${key}`);
      assert.equal(message.$ref, `#/components/messages/${key}`, `${key} is the component of its name`);
    }
  }
  assert.deepEqual(sorted(contract.messages.keys()), sorted([...contract.client, ...contract.server]));
  for (const name of contract.client) assert.ok(!contract.server.has(name), `${name} goes both ways`);
});

test("each message's payload is an object whose `type` is its name, and its examples are valid", () => {
  for (const [name, message] of contract.messages) {
    assert.equal(message.frameType, name, `message ${name}: payload type const`);
    const direction = contract.client.has(name) ? "client" : "server";
    assert.ok(message.message.examples?.length > 0, `message ${name} has an example`);
    for (const example of message.message.examples) {
      assert.equal(check(contract, direction, example.payload), null, `an example of ${name}`);
    }
  }
});

test("its frame types are those of src/domain/wire.rs", () => {
  const wire = source("src/domain/wire.rs");
  assert.deepEqual(sorted(contract.server), sorted(serdeTags(wire, "ServerFrame<'a>")));
  assert.deepEqual(sorted(contract.client), sorted(serdeTags(wire, "ClientFrame")));
});

test("its error codes are those of src/domain/wire.rs", () => {
  const wire = source("src/domain/wire.rs");
  const codes = [...wire.matchAll(/Self::\w+ => "(\w+)",/g)].map((m) => m[1]);
  assert.ok(codes.length >= 10);
  const { ErrorCode, WsErrorCode } = contract.doc.components.schemas;
  assert.deepEqual(sorted(ErrorCode.enum), sorted(codes));
  // An `error` frame never carries the two HTTP-only codes.
  assert.deepEqual(sorted(WsErrorCode.enum), sorted(codes.filter((c) => c !== "draining" && c !== "internal")));
});

test("its close codes are those of src/ws/close.rs", () => {
  const close = source("src/ws/close.rs");
  const fn = close.slice(close.indexOf("pub fn code(self)"), close.indexOf("pub fn name(self)"));
  const codes = [...fn.matchAll(/=> (\d{4}),/g)].map((m) => Number(m[1]));
  assert.ok(codes.includes(4003));
  const table = [...contract.doc.info.description.matchAll(/^\| (\d{4}) \|/gm)].map((m) => Number(m[1]));
  assert.deepEqual(table, codes);
});
