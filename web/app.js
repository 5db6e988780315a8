// danmaku viewer page: watch a stream, post, moderate. Speaks the public wire contract
// (docs/protocol.md) only; no framework, no build step. `window.__danmaku` is a small hook for
// the browser tests (tests/api/browser.rs) and for poking at the page from the console.
"use strict";

(() => {
  const MAX_CHARS = 200; // DANMAKU_MAX_COMMENT_CHARS' default; the server's answer still counts
  const LIST_LIMIT = 500; // comments kept in the list
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  const FLY_SECONDS = 7; // time a comment takes to cross the stage
  const LANE_GAP_PX = 24;
  const SYSTEM_KINDS = new Set(["gift", "follow", "mission", "system"]);

  const $ = (id) => document.getElementById(id);
  const devMode = document.querySelector('meta[name="danmaku-dev"]')?.content === "true";

  // What the tests (and a curious developer) can read.
  const hook = {
    errors: [],
    frames: 0,
    duplicates: 0,
    connects: 0,
    lastUrl: null,
    handleFrame: (frame) => handleFrame(frame),
    state: () => ({
      state: conn.state,
      lastId: conn.lastId,
      ids: [...listIds()],
      connects: hook.connects,
      duplicates: hook.duplicates,
      lastUrl: hook.lastUrl,
      resumed: conn.resumed,
      epoch: conn.epoch,
      skipped: conn.skipped,
      maxRate: conn.maxRate,
      errors: hook.errors.slice(),
    }),
  };
  window.__danmaku = hook;
  window.addEventListener("error", (e) => hook.errors.push(String(e.message || e)));
  window.addEventListener("unhandledrejection", (e) => hook.errors.push(String(e.reason)));
  document.addEventListener("securitypolicyviolation", (e) =>
    hook.errors.push(`CSP: ${e.violatedDirective} ${e.blockedURI}`));

  // ---- connection state ---------------------------------------------------------------------
  const conn = {
    ws: null,
    generation: 0, // bumps on every new socket; events of older sockets are ignored
    stream: null,
    token: null, // the JWT in use, or null (anonymous)
    claims: null,
    refreshing: null, // {token, claims} sent in a `refresh` frame, until the answer
    lastId: null,
    epoch: null, // the stream's epoch from the last `init`: a resume names it
    maxRate: null, // the max_rate asked for (user comments a second), or null: all the server sends
    skipped: 0, // comments the server said it skipped (`skipped`) since the list began
    attempt: 0, // failed attempts since the last `init`
    timer: null,
    countdown: null,
    state: "idle",
    wanted: false, // the person wants to be connected
    resumed: null,
    pending: new Map(), // ref -> text
    refSeq: 0,
    rateTimer: null,
    rateUntil: 0,
  };

  function setState(state, text) {
    conn.state = state;
    const el = $("conn-state");
    el.textContent = text;
    el.className = `state state-${state}`;
  }

  // ---- identity -----------------------------------------------------------------------------
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
    return !!(conn.claims && Array.isArray(conn.claims.mod) && conn.claims.mod.includes(conn.stream));
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

  // ---- connect, reconnect -------------------------------------------------------------------
  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams();
    if (conn.token) params.set("access_token", conn.token);
    if (conn.maxRate) params.set("max_rate", String(conn.maxRate));
    if (conn.lastId) params.set("after", conn.lastId);
    if (conn.lastId && conn.epoch) params.set("epoch", conn.epoch);
    const q = params.toString();
    return `${scheme}://${location.host}/v1/streams/${encodeURIComponent(conn.stream)}/ws${q ? `?${q}` : ""}`;
  }

  function open() {
    stopTimers();
    const generation = ++conn.generation;
    const url = wsUrl();
    hook.lastUrl = url.replace(/access_token=[^&]*/, "access_token=…");
    setState("connecting", conn.lastId ? "connecting (resuming)…" : "connecting…");
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      scheduleReconnect(null);
      return;
    }
    conn.ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (generation !== conn.generation) return;
      opened = true;
      hook.connects += 1;
    };
    ws.onmessage = (event) => {
      if (generation !== conn.generation) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      handleFrame(frame);
    };
    ws.onerror = () => {}; // onclose follows and decides
    ws.onclose = (event) => {
      if (generation !== conn.generation) return;
      conn.ws = null;
      setPosting(false);
      if (event.code === 4003) {
        conn.wanted = false;
        setState("banned", "banned from this stream: not reconnecting");
        showPostError("You are banned from this stream.");
        $("connect").disabled = false;
        $("disconnect").disabled = true;
        return;
      }
      if (!conn.wanted) {
        setState("idle", "not connected");
        return;
      }
      const why = opened ? `closed (${event.code})` : "could not connect";
      scheduleReconnect(why);
    };
  }

  function backoffDelay(attempt) {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2)); // jitter in [½, 1] of it
  }

  function scheduleReconnect(why, delayMs) {
    if (!conn.wanted) return;
    const delay = delayMs ?? backoffDelay(conn.attempt);
    conn.attempt += 1;
    stopTimers();
    const due = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, due - Date.now());
      setState("waiting", `${why ? `${why}; ` : ""}reconnecting in ${(left / 1000).toFixed(1)} s`);
    };
    tick();
    conn.countdown = setInterval(tick, 200);
    conn.timer = setTimeout(() => {
      if (conn.wanted) open();
    }, delay);
  }

  function stopTimers() {
    clearTimeout(conn.timer);
    clearInterval(conn.countdown);
    conn.timer = null;
    conn.countdown = null;
  }

  function closeSocket(code, reason) {
    const ws = conn.ws;
    conn.ws = null;
    conn.refreshing = null;
    conn.generation += 1; // its events no longer count
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code, reason);
  }

  async function connect(event) {
    event.preventDefault();
    $("connect-error").textContent = "";
    const stream = $("stream").value.trim();
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(stream)) {
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
        token = await devToken(name, stream, $("moderate").checked);
      }
    } catch (e) {
      $("connect-error").textContent = e.message;
      return;
    }
    // A new pasted token for the same user on the same stream, while connected: sent in-band
    // (`refresh`), the connection stays. The server answers `refreshed` or `unauthorized`.
    const claims = kind === "token" ? decodeClaims(token) : null;
    if (claims && conn.claims && claims.sub === conn.claims.sub && conn.stream === stream
        && conn.ws && conn.ws.readyState === WebSocket.OPEN) {
      conn.refreshing = { token, claims };
      conn.ws.send(JSON.stringify({ type: "refresh", token }));
      return;
    }
    closeSocket(1000, "switching");
    if (conn.stream !== stream) {
      clearComments();
      conn.lastId = null;
    }
    conn.stream = stream;
    conn.token = token;
    conn.claims = token ? decodeClaims(token) : null;
    conn.wanted = true;
    conn.attempt = 0;
    updateAddress();
    showIdentity();
    $("stage-label").textContent = stream;
    $("connect").textContent = "Reconnect";
    $("disconnect").disabled = false;
    showPostError("");
    open();
  }

  function showIdentity() {
    $("identity").textContent = conn.claims
      ? `${conn.claims.name || conn.claims.sub}${isModerator() ? " · moderator" : ""}`
      : "anonymous";
  }

  // `?stream=` and `?rate=` in the address bar, so a reload or a shared link comes back to both.
  function updateAddress() {
    const params = new URLSearchParams(location.search);
    if (conn.stream) params.set("stream", conn.stream);
    if (conn.maxRate) params.set("rate", String(conn.maxRate));
    else params.delete("rate");
    const q = params.toString();
    history.replaceState(null, "", q ? `?${q}` : location.pathname);
  }

  function chosenRate() {
    const value = $("rate").value;
    return value ? Number(value) : null;
  }

  // A new rate takes a new socket: reconnect now, resuming after the last comment shown (the
  // same `after=` as any reconnect: no gap, no repeat). A reconnect already scheduled (backoff,
  // a `reconnect` hint) just uses the new rate when it comes.
  function changeRate() {
    conn.maxRate = chosenRate();
    updateAddress();
    if (!conn.wanted || conn.timer) return;
    closeSocket(1000, "rate changed");
    setPosting(false);
    conn.attempt = 0;
    open();
  }

  function disconnect() {
    conn.wanted = false;
    stopTimers();
    closeSocket(1000, "bye");
    setPosting(false);
    setState("idle", "not connected");
    $("disconnect").disabled = true;
  }

  // ---- frames -------------------------------------------------------------------------------
  function handleFrame(frame) {
    hook.frames += 1;
    switch (frame.type) {
      case "init":
        onInit(frame);
        break;
      case "comments":
        // What was skipped came before this frame's comments.
        if (Number.isInteger(frame.skipped) && frame.skipped > 0) addSkipped(frame.skipped);
        for (const c of frame.comments || []) addComment(c, true);
        break;
      case "deleted":
        for (const id of frame.ids || []) removeComment(id);
        break;
      case "viewers":
        $("viewers").textContent = String(frame.count);
        break;
      case "ack":
        conn.pending.delete(frame.ref);
        break;
      case "error":
        onError(frame);
        break;
      case "reconnect":
        onReconnectHint(frame);
        break;
      case "refreshed":
        onRefreshed(frame);
        break;
      default:
        break; // pong, and whatever a later version adds
    }
  }

  function onInit(frame) {
    conn.attempt = 0;
    conn.resumed = !!frame.resumed;
    conn.epoch = frame.epoch || null;
    if (!frame.resumed) clearComments();
    for (const c of frame.comments || []) addComment(c, frame.resumed && conn.lastId !== null);
    $("viewers").textContent = String(frame.viewer_count);
    const s = frame.server || {};
    $("server").textContent = `pod ${s.pod} · ${s.slot} · v${s.version}`;
    const how = frame.resumed ? "resumed" : "live";
    setState("open", `connected (${how}) to ${frame.stream_id}`);
    setPosting(!!conn.token);
  }

  // The token sent in `refresh` is now the connection's (and the one a reconnect uses).
  function onRefreshed(frame) {
    if (!conn.refreshing) return;
    conn.token = conn.refreshing.token;
    conn.claims = conn.refreshing.claims;
    conn.refreshing = null;
    showIdentity();
    const until = new Date(Number(frame.exp) * 1000).toLocaleTimeString();
    showPostError(`Token refreshed: valid until ${until}.`);
    $("post-error").classList.add("ok");
    setPosting(true);
  }

  function onError(frame) {
    if (frame.code === "unauthorized" && !frame.ref && conn.refreshing) {
      // The answer to a `refresh` (comments always carry a ref): the old token stays.
      conn.refreshing = null;
      showPostError(`The new token was refused: ${frame.message}`);
      return;
    }
    if (frame.ref) conn.pending.delete(frame.ref);
    switch (frame.code) {
      case "rate_limited":
        startRateLimit(frame.retry_after_ms || 1000);
        break;
      case "too_long":
        showPostError(`Too long: at most ${MAX_CHARS} characters. (${frame.message})`);
        break;
      case "banned":
        showPostError("You are banned from this stream.");
        break;
      case "unauthorized":
        showPostError(conn.token
          ? "Your token has expired: paste a new one and press Reconnect to post again."
          : "Sign in (a token or a name) to post; anonymous viewers only watch.");
        break;
      default:
        showPostError(`${frame.code}: ${frame.message}`);
    }
  }

  function onReconnectHint(frame) {
    const after = Math.max(0, Number(frame.after_ms) || 0);
    // Open a new socket with after= once the delay is over; the old one is let go now (the
    // server would close it soon anyway), so its events no longer count.
    closeSocket(1000, "reconnect hint");
    setPosting(false);
    conn.attempt = 0;
    scheduleReconnect("server asked to reconnect", after);
  }

  // ---- posting ------------------------------------------------------------------------------
  function setPosting(on) {
    const can = on && conn.ws && conn.ws.readyState === WebSocket.OPEN;
    $("text").disabled = !can;
    $("send").disabled = !can || Date.now() < conn.rateUntil;
    $("text").placeholder = can
      ? "Say something (Enter sends)"
      : conn.token ? "Not connected" : "Connect with a name or token to comment";
  }

  function showPostError(text) {
    $("post-error").textContent = text;
    $("post-error").classList.remove("ok");
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

  function startRateLimit(ms) {
    conn.rateUntil = Date.now() + ms;
    clearInterval(conn.rateTimer);
    const tick = () => {
      const left = conn.rateUntil - Date.now();
      if (left <= 0) {
        clearInterval(conn.rateTimer);
        conn.rateTimer = null;
        showPostError("");
        setPosting(!!conn.token);
        return;
      }
      showPostError(`Slow down: you can post again in ${(left / 1000).toFixed(1)} s.`);
      $("send").disabled = true;
    };
    tick();
    conn.rateTimer = setInterval(tick, 100);
  }

  function send(event) {
    event.preventDefault();
    const text = $("text").value;
    if (!text.trim()) return;
    if (countChars(text) > MAX_CHARS) {
      showPostError(`Too long: ${countChars(text)} characters, at most ${MAX_CHARS}.`);
      return;
    }
    if (Date.now() < conn.rateUntil) return;
    if (!conn.ws || conn.ws.readyState !== WebSocket.OPEN) {
      showPostError("Not connected.");
      return;
    }
    const ref = `r${++conn.refSeq}`;
    conn.pending.set(ref, text);
    conn.ws.send(JSON.stringify({ type: "comment", text, ref }));
    $("text").value = "";
    updateCount();
    if (!conn.rateTimer) showPostError("");
    $("text").focus();
  }

  // ---- the list -----------------------------------------------------------------------------
  function listIds() {
    return Array.from($("comments").querySelectorAll(":scope > li[data-id]"), (li) => li.dataset.id);
  }

  function clearComments() {
    $("comments").replaceChildren();
    for (const el of $("stage").querySelectorAll(".flyer")) el.remove();
    conn.skipped = 0;
    showSkippedTotal();
  }

  // Appends `li` to the list (comment or skip marker), keeps LIST_LIMIT, follows the bottom.
  function appendToList(li) {
    const list = $("comments");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(li);
    while (list.children.length > LIST_LIMIT) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function compareIds(a, b) {
    const [am, as] = a.split("-").map(Number);
    const [bm, bs] = b.split("-").map(Number);
    return am - bm || as - bs;
  }

  function addComment(c, fly) {
    const list = $("comments");
    if (list.querySelector(`li[data-id="${CSS.escape(c.id)}"]`)) {
      hook.duplicates += 1;
      return;
    }
    if (!conn.lastId || compareIds(c.id, conn.lastId) > 0) conn.lastId = c.id;
    const system = SYSTEM_KINDS.has(c.kind);
    const li = document.createElement("li");
    li.dataset.id = c.id;
    li.dataset.kind = c.kind;
    if (c.user) li.dataset.user = c.user.id;
    if (system) li.classList.add("system");
    if (system) {
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = c.kind;
      li.append(kind);
    }
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = c.user ? c.user.name : c.kind;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = c.text;
    const time = document.createElement("time");
    time.className = "time";
    const ts = new Date(c.ts);
    time.dateTime = ts.toISOString();
    time.textContent = ts.toLocaleTimeString();
    li.append(author, text, time);
    if (isModerator()) li.append(modButtons(c));
    appendToList(li);
    if (fly) flyComment(c, system);
  }

  function skippedWords(n) {
    return `${n} comment${n === 1 ? "" : "s"} skipped`;
  }

  // A "+N" marker where the server skipped comments; one marker for skips with nothing shown
  // between them.
  function addSkipped(n) {
    conn.skipped += n;
    showSkippedTotal();
    const last = $("comments").lastElementChild;
    let li = last && last.classList.contains("skipped") ? last : null;
    const total = n + (li ? Number(li.dataset.skipped) : 0);
    if (!li) {
      li = document.createElement("li");
      li.className = "skipped";
      const count = document.createElement("span");
      count.className = "skipped-count";
      count.setAttribute("aria-hidden", "true");
      const label = document.createElement("span");
      label.className = "visually-hidden";
      li.append(count, label);
    }
    li.dataset.skipped = String(total);
    li.title = `${skippedWords(total)}: over your rate, or while the connection fell behind`;
    li.querySelector(".skipped-count").textContent = `+${total}`;
    li.querySelector(".visually-hidden").textContent = skippedWords(total);
    if (li !== last) appendToList(li);
  }

  function showSkippedTotal() {
    $("skipped").textContent = String(conn.skipped);
    $("skipped-chip").hidden = conn.skipped === 0;
  }

  function removeComment(id) {
    $("comments").querySelector(`li[data-id="${CSS.escape(id)}"]`)?.remove();
    $("stage").querySelector(`.flyer[data-id="${CSS.escape(id)}"]`)?.remove();
  }

  // ---- moderation ---------------------------------------------------------------------------
  function modButtons(c) {
    const box = document.createElement("span");
    box.className = "mod";
    const del = document.createElement("button");
    del.type = "button";
    del.className = "small delete";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `Delete comment: ${c.text}`);
    del.addEventListener("click", () => moderate("DELETE",
      `/v1/streams/${encodeURIComponent(conn.stream)}/comments/${encodeURIComponent(c.id)}`, null, "deleted"));
    box.append(del);
    if (c.user) {
      const ban = document.createElement("button");
      ban.type = "button";
      ban.className = "small danger ban";
      ban.textContent = "Ban author";
      ban.setAttribute("aria-label", `Ban ${c.user.name}`);
      ban.addEventListener("click", () => {
        if (!window.confirm(`Ban ${c.user.name} (${c.user.id}) from ${conn.stream}?`)) return;
        moderate("POST", `/v1/streams/${encodeURIComponent(conn.stream)}/bans`,
          { user_id: c.user.id }, `banned ${c.user.name}`);
      });
      box.append(ban);
    }
    return box;
  }

  async function moderate(method, path, body, done) {
    try {
      const response = await fetch(path, {
        method,
        headers: {
          authorization: `Bearer ${conn.token}`,
          ...(body ? { "content-type": "application/json" } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
      if (response.ok) {
        showPostError(`Done: ${done}.`);
        $("post-error").classList.add("ok");
      } else {
        const err = await response.json().catch(() => ({}));
        showPostError(`Moderation refused (${response.status}): ${err.message || err.code || "?"}`);
      }
    } catch (e) {
      showPostError(`Moderation failed: ${e.message}`);
    }
  }

  // ---- the overlay --------------------------------------------------------------------------
  const lanes = []; // per lane: the time (ms) its last comment's tail has cleared the right edge

  function flyComment(c, system) {
    const stage = $("stage");
    const width = stage.clientWidth;
    const height = stage.clientHeight;
    if (!width || !height) return;
    const el = document.createElement("span");
    el.className = `flyer${system ? " system" : ""}`;
    el.dataset.id = c.id;
    if (conn.claims && c.user && c.user.id === conn.claims.sub) el.classList.add("own");
    el.textContent = system && c.user ? `${c.user.name} ${c.text}` : c.text;
    el.style.visibility = "hidden";
    stage.append(el);
    const w = el.offsetWidth;
    const laneHeight = el.offsetHeight + 4;
    const laneCount = Math.max(1, Math.floor((height - 8) / laneHeight));
    lanes.length = laneCount;
    const now = performance.now();
    const speed = width / (FLY_SECONDS * 1000); // px per ms: the same for every comment
    // The first lane that is free; if none is, the one that frees soonest.
    let lane = 0;
    for (let i = 0; i < laneCount; i++) {
      const free = lanes[i] || 0;
      if (free <= now) { lane = i; break; }
      if (free < (lanes[lane] || 0)) lane = i;
    }
    lanes[lane] = Math.max(now, lanes[lane] || 0) + (w + LANE_GAP_PX) / speed;
    el.style.top = `${4 + lane * laneHeight}px`;
    el.style.visibility = "visible";
    const duration = (width + w) / speed;
    const animation = el.animate(
      [{ transform: `translateX(${width}px)` }, { transform: `translateX(${-w}px)` }],
      { duration, easing: "linear" },
    );
    animation.onfinish = () => el.remove();
  }

  // ---- wiring -------------------------------------------------------------------------------
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
    conn.maxRate = chosenRate();
    if (devMode) $("as-dev").checked = true;
    for (const radio of document.querySelectorAll('input[name="identity"]')) {
      radio.addEventListener("change", showIdentityFields);
    }
    showIdentityFields();
    $("connect-form").addEventListener("submit", connect);
    $("rate").addEventListener("change", changeRate);
    $("disconnect").addEventListener("click", disconnect);
    $("post-form").addEventListener("submit", send);
    $("text").addEventListener("input", updateCount);
    $("text-count").textContent = `0/${MAX_CHARS}`;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
