// danmaku viewer page: watch a stream, post, moderate. The connection is the client library
// `danmaku-client` (clients/js, served at /danmaku-client/): resume, backoff, reconnect
// hints, close codes, acks and token refresh live there; this file is the page around it
// (the list and the overlay are web/comments.js, served at /page/comments.js; a moderator's
// panel and actions web/moderation.js, at /page/moderation.js; the simulated player, whose
// media clock decides when each comment shows, web/player.js, at /page/player.js).
// `window.__danmaku` is a small hook for the browser tests (tests/api/browser.rs) and for
// poking at the page from the console.
import { Banned, Blocked, Closed, RateLimited, RoleRequired, SlowMode, Timeout, TooLong, Unauthorized,
  connect as openStream } from "/danmaku-client/index.js";
import { addSkipped, clearComments, flyOnly, listIds, listedComment, removeComment, skippedTotal,
  addComment as listComment } from "/page/comments.js";
import * as moderation from "/page/moderation.js";
import * as player from "/page/player.js";

const MAX_CHARS = 200; // DANMAKU_MAX_COMMENT_CHARS' default; the server's answer still counts

const $ = (id) => document.getElementById(id);
const devMode = document.querySelector('meta[name="danmaku-dev"]')?.content === "true";

const page = {
  stream: null, // the library's Stream, or null
  streamId: null,
  token: null, // the JWT in use, or null (anonymous)
  claims: null,
  maxRate: null, // the max_rate asked for, or null: all the server sends
  resumed: null, // whether the last `init` resumed
  countdown: null,
  rateTimer: null,
  rateUntil: 0,
  noticeUntil: 0, // a moderator's notice (approved, rejected) stays this long over a countdown
  settings: null, // the stream's settings last heard
};

// What the tests (and a curious developer) can read.
const hook = {
  errors: [],
  frames: 0,
  duplicates: 0,
  connects: 0,
  lastUrl: null,
  arrivals: new Map(), // comment id → when the library handed it to the page (wall ms)
  handleFrame: (frame) => handleFrame(frame),
  state: () => ({
    state: page.stream?.state ?? "idle",
    lastId: page.stream?.lastId ?? null,
    ids: [...listIds()],
    connects: hook.connects,
    duplicates: hook.duplicates,
    lastUrl: hook.lastUrl,
    resumed: page.resumed,
    epoch: page.stream?.epoch ?? null,
    skipped: skippedTotal(),
    maxRate: page.maxRate,
    settings: page.settings,
    arrivals: Object.fromEntries(hook.arrivals),
    media: { now: player.now(), vod: player.playingVod(), ...(page.stream?.mediaStats ?? {}) },
    errors: hook.errors.slice(),
  }),
};
window.__danmaku = hook;
window.addEventListener("error", (e) => hook.errors.push(String(e.message || e)));
window.addEventListener("unhandledrejection", (e) => hook.errors.push(String(e.reason)));
document.addEventListener("securitypolicyviolation", (e) =>
  hook.errors.push(`CSP: ${e.violatedDirective} ${e.blockedURI}`));

function setState(state, text) {
  const el = $("conn-state");
  el.textContent = text;
  el.className = `state state-${state}`;
}

// ---- identity -------------------------------------------------------------------------------
function decodeClaims(token) {
  try {
    const part = token.split(".")[1];
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

function isModerator() {
  return !!(page.claims && Array.isArray(page.claims.mod) && page.claims.mod.includes(page.streamId));
}

function identityKind() {
  return document.querySelector('input[name="identity"]:checked').value;
}

function showIdentityFields() {
  const kind = identityKind();
  $("token-fields").hidden = kind !== "token";
  $("dev-fields").hidden = kind !== "dev";
}

async function devToken(name, stream, moderate) {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, stream, moderate }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || `the server answered ${response.status}`);
  return body.token;
}

function showIdentity() {
  $("identity").textContent = page.claims
    ? `${page.claims.name || page.claims.sub}${isModerator() ? " · moderator" : ""}`
    : "anonymous";
}

// ---- the connection (the library's events) ----------------------------------------------------
function start(after, epoch) {
  const stream = openStream(location.origin, page.streamId, {
    token: page.token ?? undefined,
    maxRate: page.maxRate,
    after,
    epoch,
    mediaClock: player.now,
  });
  page.stream = stream;
  const mine = (fn) => (event) => { if (page.stream === stream) fn(event); };
  stream.on("state", mine(onState));
  stream.on("reset", mine(() => clearComments()));
  stream.on("comments", mine(({ comments, skipped, backlog, replay }) => {
    if (skipped > 0) addSkipped(skipped); // what was skipped came before these comments
    for (const c of comments) {
      if (hook.arrivals.size >= 1000) hook.arrivals.delete(hook.arrivals.keys().next().value);
      hook.arrivals.set(c.id, Date.now());
      // A replayed comment may already be listed (seen live): it flies again, listed once.
      if (replay && listedComment(c.id)) flyOnly(c);
      else addComment(c, !backlog || page.resumed);
    }
    showPinned();
  }));
  stream.on("settings", mine(onSettings));
  stream.on("held", mine(({ comment }) => moderation.addHeld(comment)));
  stream.on("released", mine(() => notify("A moderator approved your held comment: it is posted.", true)));
  stream.on("dropped", mine(() => notify("A moderator rejected your held comment.", false)));
  stream.on("deleted", mine(({ ids }) => ids.forEach(removeComment)));
  stream.on("viewers", mine(({ count }) => { $("viewers").textContent = String(count); }));
  stream.on("frame", mine(() => { hook.frames += 1; }));
}

function stop() {
  const stream = page.stream;
  page.stream = null; // its last events (closed) no longer reach the page
  stream?.close();
  stopCountdown();
}

function onState(e) {
  stopCountdown();
  switch (e.state) {
    case "connecting":
    case "resuming":
      hook.lastUrl = e.url;
      setState("connecting", e.after ? "connecting (resuming)…" : "connecting…");
      break;
    case "live": {
      hook.connects += 1;
      page.resumed = e.resumed;
      $("viewers").textContent = String(e.viewerCount);
      const s = e.server || {};
      $("server").textContent = `pod ${s.pod} · ${s.slot} · v${s.version}`;
      setState("open", `connected (${e.resumed ? "resumed" : "live"}) to ${page.streamId}`);
      break;
    }
    case "reconnecting": {
      const tick = () => {
        const left = Math.max(0, e.at - Date.now());
        setState("waiting", `${e.reason}; reconnecting in ${(left / 1000).toFixed(1)} s`);
      };
      tick();
      page.countdown = setInterval(tick, 200);
      break;
    }
    case "closed":
      onClosed(e);
      break;
  }
  setPosting();
}

function onClosed(e) {
  if (e.reason === "banned") {
    setState("banned", "banned from this stream: not reconnecting");
    showPostError("You are banned from this stream.");
  } else {
    setState("closed", `closed: ${e.message}`);
  }
  page.stream = null;
  $("connect").disabled = false;
  $("disconnect").disabled = true;
}

// ---- settings: the pin and slow mode --------------------------------------------------------
function onSettings(settings) {
  page.settings = settings;
  const slow = settings.slow_mode_ms;
  $("slow-chip").hidden = slow === 0;
  $("slow").textContent = `${slow / 1000} s`;
  showPinned();
  if (isModerator()) moderation.showSettings(settings);
}

// The pinned comment above the list: its text if the list has it, else its id.
function showPinned() {
  const id = page.settings?.pinned;
  $("pinned").hidden = !id;
  if (!id) return;
  const shown = listedComment(id);
  $("pinned-author").textContent = shown ? shown.author : "";
  $("pinned-text").textContent = shown ? shown.text : `an earlier comment (${id})`;
}

function stopCountdown() {
  clearInterval(page.countdown);
  page.countdown = null;
}

// Feeds the page a server frame as if it had come (tests, console): comments, deletions and
// counts go to the page's own handlers; a `reconnect` hint goes to the library.
function handleFrame(frame) {
  hook.frames += 1;
  switch (frame.type) {
    case "comments":
      if (Number.isInteger(frame.skipped) && frame.skipped > 0) addSkipped(frame.skipped);
      for (const c of frame.comments || []) addComment(c, true);
      break;
    case "deleted":
      for (const id of frame.ids || []) removeComment(id);
      break;
    case "viewers":
      $("viewers").textContent = String(frame.count);
      break;
    case "reconnect":
      page.stream?.reconnect({ inMs: frame.after_ms, reason: "server asked to reconnect" });
      break;
    default:
      break;
  }
}

async function connect(event) {
  event.preventDefault();
  $("connect-error").textContent = "";
  const streamId = $("stream").value.trim();
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(streamId)) {
    $("connect-error").textContent = "A stream id is 1 to 64 letters, digits, _ or -.";
    $("stream").focus();
    return;
  }
  let token = null;
  const kind = identityKind();
  try {
    if (kind === "token") {
      token = $("token").value.trim();
      if (!token) throw new Error("Paste a token, or connect anonymously.");
      if (!decodeClaims(token)) throw new Error("That does not look like a JWT.");
    } else if (kind === "dev") {
      const name = $("name").value.trim();
      if (!name) throw new Error("Choose a display name.");
      token = await devToken(name, streamId, $("moderate").checked);
    }
  } catch (e) {
    $("connect-error").textContent = e.message;
    return;
  }
  // A new pasted token for the same user on the same stream, while connected: sent in-band
  // (`refresh`), the connection stays.
  const claims = kind === "token" ? decodeClaims(token) : null;
  if (claims && page.claims && claims.sub === page.claims.sub && page.streamId === streamId
      && page.stream?.state === "live") {
    refreshToken(token, claims);
    return;
  }
  // Reconnecting to the same stream resumes after the last comment shown.
  const same = page.streamId === streamId && page.stream;
  const after = same ? page.stream.lastId : null;
  const epoch = same ? page.stream.epoch : null;
  stop();
  if (!same) clearComments();
  page.streamId = streamId;
  page.token = token;
  page.claims = token ? decodeClaims(token) : null;
  updateAddress();
  showIdentity();
  page.settings = null;
  $("pinned").hidden = true;
  $("slow-chip").hidden = true;
  if (isModerator()) {
    moderation.bind(streamId, token, notify);
    moderation.open();
  } else {
    moderation.close();
  }
  $("stage-label").textContent = streamId;
  $("connect").textContent = "Reconnect";
  $("disconnect").disabled = false;
  showPostError("");
  start(after, epoch);
}

async function refreshToken(token, claims) {
  try {
    const { exp } = await page.stream.refresh(token);
    page.token = token;
    page.claims = claims;
    showIdentity();
    showPostError(`Token refreshed: valid until ${new Date(Number(exp) * 1000).toLocaleTimeString()}.`);
    $("post-error").classList.add("ok");
    setPosting();
  } catch (e) {
    showPostError(`The new token was refused: ${e.message}`);
  }
}

// `?stream=` and `?rate=` in the address bar, so a reload or a shared link comes back to both.
function updateAddress() {
  const params = new URLSearchParams(location.search);
  if (page.streamId) params.set("stream", page.streamId);
  if (page.maxRate) params.set("rate", String(page.maxRate));
  else params.delete("rate");
  const q = params.toString();
  history.replaceState(null, "", q ? `?${q}` : location.pathname);
}

function chosenRate() {
  const value = $("rate").value;
  return value ? Number(value) : null;
}

// A new rate takes a new socket: the library reconnects now, resuming after the last comment
// shown (a reconnect already waiting just uses the new rate).
function changeRate() {
  page.maxRate = chosenRate();
  updateAddress();
  page.stream?.setMaxRate(page.maxRate);
}

function disconnect() {
  stop();
  setState("idle", "not connected");
  setPosting();
  $("disconnect").disabled = true;
}

// ---- posting --------------------------------------------------------------------------------
function setPosting() {
  const can = !!page.token && page.stream?.state === "live";
  $("text").disabled = !can;
  $("send").disabled = !can || Date.now() < page.rateUntil;
  $("text").placeholder = can
    ? "Say something (Enter sends)"
    : page.token ? "Not connected" : "Connect with a name or token to comment";
}

function showPostError(text) {
  $("post-error").textContent = text;
  $("post-error").classList.remove("ok");
}

/** How long a notice stays before a running countdown shows again. */
const NOTICE_MS = 5000;

/** A line under the comment box: `ok` shows it as good news. */
function notify(text, ok) {
  page.noticeUntil = Date.now() + NOTICE_MS;
  showPostError(text);
  $("post-error").classList.toggle("ok", !!ok);
}

function countChars(text) {
  return [...text].length; // Unicode scalar values, as the server counts
}

function updateCount() {
  const n = countChars($("text").value);
  const el = $("text-count");
  el.textContent = `${n}/${MAX_CHARS}`;
  el.classList.toggle("over", n > MAX_CHARS);
}

// Counts down until the next comment may go (`why`: rate limit or slow mode).
function startRateLimit(ms, why = "Slow down") {
  page.rateUntil = Date.now() + ms;
  page.noticeUntil = 0; // the viewer's own post answers first
  clearInterval(page.rateTimer);
  const tick = () => {
    const left = page.rateUntil - Date.now();
    if (left <= 0) {
      clearInterval(page.rateTimer);
      page.rateTimer = null;
      if (Date.now() >= page.noticeUntil) showPostError("");
      setPosting();
      return;
    }
    // A moderator's notice is not overwritten at once by the countdown's next tick.
    if (Date.now() >= page.noticeUntil) {
      showPostError(`${why}: you can post again in ${(left / 1000).toFixed(1)} s.`);
    }
    $("send").disabled = true;
  };
  tick();
  page.rateTimer = setInterval(tick, 100);
}

function explain(error) {
  if (error instanceof RateLimited) return startRateLimit(error.retryAfterMs);
  if (error instanceof SlowMode) return startRateLimit(error.retryAfterMs, "Slow mode");
  if (error instanceof RoleRequired) return showPostError("Only some viewers (subscribers, say) may post on this stream now.");
  if (error instanceof Blocked) return showPostError("Not sent: the comment contains a term this stream blocks.");
  if (error instanceof TooLong) return showPostError(`Too long: at most ${MAX_CHARS} characters. (${error.message})`);
  if (error instanceof Banned) return showPostError("You are banned from this stream.");
  if (error instanceof Unauthorized) {
    return showPostError(page.token
      ? "Your token has expired: paste a new one and press Reconnect to post again."
      : "Sign in (a token or a name) to post; anonymous viewers only watch.");
  }
  if (error instanceof Timeout) return showPostError("No answer from the server yet: the comment may still appear.");
  if (error instanceof Closed) return showPostError("Not sent: the connection was closed.");
  return showPostError(`${error.code ?? "error"}: ${error.message}`);
}

function send(event) {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim()) return;
  if (countChars(text) > MAX_CHARS) {
    showPostError(`Too long: ${countChars(text)} characters, at most ${MAX_CHARS}.`);
    return;
  }
  if (Date.now() < page.rateUntil) return;
  if (page.stream?.state !== "live") {
    showPostError("Not connected.");
    return;
  }
  page.stream.post(text).then(posted, explain);
  $("text").value = "";
  updateCount();
  if (!page.rateTimer) showPostError("");
  $("text").focus();
}

// A post's answer: held for review, or posted (then, in slow mode, the wait starts).
function posted(answer) {
  if (answer?.held) {
    notify("Your comment is held for a moderator's review.", true);
    return;
  }
  const slow = page.settings?.slow_mode_ms ?? 0;
  if (slow > 0 && !isModerator()) startRateLimit(slow, "Slow mode");
}

// ---- the list ---------------------------------------------------------------------------------
function addComment(c, fly) {
  const own = !!(page.claims && c.user && c.user.id === page.claims.sub);
  const extra = isModerator() ? moderation.commentActions(c) : own ? ownActions(c) : null;
  // The library delivers each comment once: this stays 0.
  if (!listComment(c, { fly, own, extra })) hook.duplicates += 1;
}

// An author may delete their own comment (over the WebSocket).
function ownActions(c) {
  const box = document.createElement("span");
  box.className = "mod";
  const del = document.createElement("button");
  del.type = "button";
  del.className = "small delete";
  del.textContent = "Delete";
  del.setAttribute("aria-label", `Delete your comment: ${c.text}`);
  del.addEventListener("click", () => {
    page.stream?.delete(c.id).then(() => notify("Your comment was deleted.", true), explain);
  });
  box.append(del);
  return box;
}

// ---- wiring ---------------------------------------------------------------------------------
function init() {
  for (const el of document.querySelectorAll(".dev-only")) el.hidden = !devMode;
  const params = new URLSearchParams(location.search);
  const stream = params.get("stream");
  if (stream) $("stream").value = stream;
  const rate = params.get("rate");
  if (rate && /^[1-9][0-9]{0,5}$/.test(rate)) {
    // A rate the menu does not offer (a hand-made link) gets an entry of its own.
    if (![...$("rate").options].some((o) => o.value === rate)) $("rate").add(new Option(rate, rate));
    $("rate").value = rate;
  }
  page.maxRate = chosenRate();
  if (devMode) $("as-dev").checked = true;
  for (const radio of document.querySelectorAll('input[name="identity"]')) {
    radio.addEventListener("change", showIdentityFields);
  }
  showIdentityFields();
  $("connect-form").addEventListener("submit", connect);
  player.bind(
    (from, to, options) => page.stream?.replay(from, to, options) ?? Promise.resolve([]),
    () => page.stream?.clearReplay(),
  );
  $("rate").addEventListener("change", changeRate);
  $("disconnect").addEventListener("click", disconnect);
  $("post-form").addEventListener("submit", send);
  $("text").addEventListener("input", updateCount);
  $("text-count").textContent = `0/${MAX_CHARS}`;
}

init(); // a module runs after the document is parsed
