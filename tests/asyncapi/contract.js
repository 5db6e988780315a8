// docs/asyncapi.yaml as validators: each message's payload schema compiled with ajv, and
// which messages the client sends and which the server sends, read from the document's
// operations (`receive`: the server receives it; `send` and the replies: the server sends it).
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv from "ajv";
import YAML from "yaml";

const here = dirname(fileURLToPath(import.meta.url));
export const DOCUMENT_PATH = resolve(here, "../../docs/asyncapi.yaml");

const ROOT_ID = "asyncapi";

/** The last part of a local `$ref` (`#/channels/stream/messages/ack` → `ack`). */
function refName(ref) {
  return ref.$ref.split("/").pop();
}

/** The document, its validators and the direction of each message. */
export function loadContract(path = DOCUMENT_PATH) {
  const text = readFileSync(path, "utf8");
  const doc = YAML.parse(text);
  const ajv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true });
  // The document's components are the root the payloads' `#/components/...` references
  // resolve in; only the payload schemas ajv is pointed at are compiled.
  ajv.addKeyword({ keyword: "components" });
  ajv.addSchema({ $id: ROOT_ID, components: doc.components });

  const messages = new Map();
  for (const [name, message] of Object.entries(doc.components.messages)) {
    const validate = ajv.getSchema(`${ROOT_ID}#/components/messages/${name}/payload`);
    if (!validate) throw new Error(`message ${name}: its payload does not compile`);
    const payload = message.payload.$ref
      ? doc.components.schemas[message.payload.$ref.split("/").pop()]
      : message.payload;
    messages.set(name, { name, message, validate, frameType: payload?.properties?.type?.const });
  }

  const client = new Set();
  const server = new Set();
  for (const operation of Object.values(doc.operations)) {
    const into = operation.action === "receive" ? client : server;
    for (const ref of operation.messages) into.add(refName(ref));
    for (const ref of operation.reply?.messages ?? []) server.add(refName(ref));
  }

  /** The message of `direction` ("client" or "server") whose `type` is the frame's. */
  const byType = (direction, type) => {
    const names = direction === "client" ? client : server;
    return [...names].map((n) => messages.get(n)).find((m) => m.frameType === type);
  };

  return { doc, text, ajv, messages, client, server, byType };
}

/** Why `frame` (parsed JSON) is not a valid `direction` message, or `null` if it is one. */
export function check(contract, direction, frame) {
  if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
    return "not a JSON object";
  }
  const message = contract.byType(direction, frame.type);
  if (!message) return `no ${direction} message has type ${JSON.stringify(frame.type)}`;
  if (message.validate(frame)) return null;
  const errors = message.validate.errors
    .map((e) => `${e.instancePath || "/"} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ""}`)
    .join("; ");
  return `message ${message.name}: ${errors}`;
}

/** The `direction` messages whose schema takes `frame` (for frames that must match none). */
export function accepting(contract, direction, frame) {
  const names = direction === "client" ? contract.client : contract.server;
  return [...names].filter((n) => contract.messages.get(n).validate(frame));
}
