// The moderator's side of the page: the stream's settings (slow mode, the roles that may
// post, the pin), the queue of comments held for review with approve and reject, and the
// actions on a comment (pin, delete, mute, shadow ban, ban, ban and purge). Everything goes
// through the moderation endpoints with the page's token; what changes comes back to every
// viewer as frames (`settings`, `deleted`, ...), which web/app.js applies. No connection code.

const $ = (id) => document.getElementById(id);
const MUTE_SECONDS = 600;

const ctx = {
  streamId: null,
  token: null,
  notify: (text, ok) => void [text, ok], // shows a line under the comment box
};

/** Where the actions go: the stream, the token, and how to tell the person what happened. */
export function bind(streamId, token, notify) {
  ctx.streamId = streamId;
  ctx.token = token;
  ctx.notify = notify;
}

function base() {
  return `/v1/streams/${encodeURIComponent(ctx.streamId)}`;
}

async function call(method, path, body) {
  const response = await fetch(`${base()}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ctx.token}`,
      ...(body ? { "content-type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`${response.status}: ${answer?.message || answer?.code || "refused"}`);
  return answer;
}

// Calls the endpoint and tells the person; true if it was done.
async function act(what, method, path, body) {
  try {
    await call(method, path, body);
    ctx.notify(`Done: ${what}.`, true);
    return true;
  } catch (e) {
    ctx.notify(`Moderation refused (${e.message})`, false);
    return false;
  }
}

// ---- the panel ------------------------------------------------------------------------------

/** Shows the panel for a moderator of the stream (loading settings and held comments). */
export async function open() {
  $("moderation").hidden = false;
  $("held-list").replaceChildren();
  const [settings, held] = await Promise.all([
    call("GET", "/settings").catch(() => null),
    call("GET", "/held").catch(() => null),
  ]);
  if (settings) showSettings(settings.settings);
  for (const comment of held?.held ?? []) addHeld(comment);
}

export function close() {
  $("moderation").hidden = true;
}

/** Fills the settings form with `settings` (an `init`'s or a `settings` frame's). */
export function showSettings(settings) {
  $("slow-mode").value = String(Math.round(settings.slow_mode_ms / 1000));
  $("post-roles").value = settings.post_roles.join(", ");
  $("pinned-id").textContent = settings.pinned ?? "none";
  $("unpin").disabled = !settings.pinned;
}

async function saveSettings(event) {
  event.preventDefault();
  const seconds = Number($("slow-mode").value);
  const roles = $("post-roles").value.split(",").map((r) => r.trim()).filter(Boolean);
  await act("settings saved", "PATCH", "/settings", { slow_mode_ms: seconds * 1000, post_roles: roles });
}

/** Pins `id` (or unpins with `null`). */
export function pin(id) {
  return act(id ? "pinned" : "unpinned", "PATCH", "/settings", { pinned: id });
}

// ---- the held queue -------------------------------------------------------------------------

/** Lists a held comment (from a `held` frame or `GET …/held`) with approve and reject. */
export function addHeld(comment) {
  if ($("held-list").querySelector(`li[data-id="${CSS.escape(comment.id)}"]`)) return;
  const li = document.createElement("li");
  li.dataset.id = comment.id;
  const who = document.createElement("span");
  who.className = "author";
  who.textContent = comment.user ? comment.user.name : comment.kind;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = comment.text;
  const decide = (label, css, method, path, what) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `small ${css}`;
    button.textContent = label;
    button.setAttribute("aria-label", `${label}: ${comment.text}`);
    button.addEventListener("click", async () => {
      if (await act(what, method, path)) li.remove();
      showHeldCount();
    });
    return button;
  };
  const id = encodeURIComponent(comment.id);
  li.append(who, text,
    decide("Approve", "approve", "POST", `/held/${id}/approve`, "approved"),
    decide("Reject", "danger reject", "DELETE", `/held/${id}`, "rejected"));
  $("held-list").append(li);
  showHeldCount();
}

function showHeldCount() {
  const n = $("held-list").children.length;
  $("held-count").textContent = String(n);
  $("held-empty").hidden = n > 0;
}

// ---- a comment's actions --------------------------------------------------------------------

/** The buttons a moderator gets on a comment. */
export function commentActions(c) {
  const box = document.createElement("span");
  box.className = "mod";
  const button = (label, css, title, onClick) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = `small ${css}`;
    b.textContent = label;
    b.title = title;
    b.setAttribute("aria-label", `${title}: ${c.text}`);
    b.addEventListener("click", onClick);
    box.append(b);
  };
  const id = encodeURIComponent(c.id);
  button("Pin", "pin", "Pin this comment", () => pin(c.id));
  button("Delete", "delete", "Delete this comment", () => act("deleted", "DELETE", `/comments/${id}`));
  if (c.user && c.kind === "user") {
    const name = c.user.name;
    const ban = (mode, extra, what) => () => {
      if (mode !== "mute" && !window.confirm(`${what} ${name} (${c.user.id}) on ${ctx.streamId}?`)) return;
      act(`${what} ${name}`, "POST", "/bans", { user_id: c.user.id, mode, ...extra });
    };
    button("Mute", "mute", `Mute the author for ${MUTE_SECONDS / 60} minutes`,
      ban("mute", { seconds: MUTE_SECONDS }, "muted"));
    button("Shadow", "shadow", "Shadow-ban the author: only they and moderators see their comments",
      ban("shadow", {}, "shadow-banned"));
    button("Ban", "danger ban", "Ban the author", ban("ban", {}, "banned"));
    button("Purge", "danger purge", "Ban the author and delete their comments",
      ban("ban", { purge: true }, "banned and purged"));
  }
  return box;
}

// ---- wiring ---------------------------------------------------------------------------------
$("settings-form").addEventListener("submit", saveSettings);
$("unpin").addEventListener("click", () => pin(null));
