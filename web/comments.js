// The page's comment list and the overlay over the stage: what a comment looks like, the "+N"
// markers for skipped comments, and the lanes comments fly in. No connection code: web/app.js
// feeds it what the client library delivers.

const LIST_LIMIT = 500; // comments kept in the list
const FLY_SECONDS = 7; // time a comment takes to cross the stage
const LANE_GAP_PX = 24;
const SYSTEM_KINDS = new Set(["gift", "follow", "mission", "system"]);

const $ = (id) => document.getElementById(id);
let skipped = 0; // comments the server said it skipped since the list began

/** The skipped total since the list began. */
export function skippedTotal() {
  return skipped;
}

/** The ids listed, top to bottom. */
export function listIds() {
  return Array.from($("comments").querySelectorAll(":scope > li[data-id]"), (li) => li.dataset.id);
}

/** Empties the list and the stage. */
export function clearComments() {
  $("comments").replaceChildren();
  for (const el of $("stage").querySelectorAll(".flyer")) el.remove();
  skipped = 0;
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

/** Lists `c` (with `extra`, e.g. moderation buttons, at the end of its row) and, when `fly`,
 *  flies it over the stage (`own`: the viewer's own). False if it is listed already. */
export function addComment(c, { fly, own, extra }) {
  if ($("comments").querySelector(`li[data-id="${CSS.escape(c.id)}"]`)) return false;
  const system = SYSTEM_KINDS.has(c.kind);
  const li = document.createElement("li");
  li.dataset.id = c.id;
  li.dataset.kind = c.kind;
  if (c.user) li.dataset.user = c.user.id;
  if (system) {
    li.classList.add("system");
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
  if (c.shadow) {
    // Only moderators get the mark: the comment reaches its author and them, nobody else.
    li.classList.add("shadow");
    const tag = document.createElement("span");
    tag.className = "shadow-tag";
    tag.textContent = "shadow";
    tag.title = "only its author and moderators see this comment";
    li.insertBefore(tag, text);
  }
  if (extra) li.append(extra);
  appendToList(li);
  if (fly) flyComment(c, system, own);
  return true;
}

function skippedWords(n) {
  return `${n} comment${n === 1 ? "" : "s"} skipped`;
}

// A "+N" marker where the server skipped comments; one marker for skips with nothing shown
// between them.
export function addSkipped(n) {
  skipped += n;
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
  $("skipped").textContent = String(skipped);
  $("skipped-chip").hidden = skipped === 0;
}

/** The listed comment `id`'s author and text, or null if it is not in the list. */
export function listedComment(id) {
  const li = $("comments").querySelector(`li[data-id="${CSS.escape(id)}"]`);
  if (!li) return null;
  return { author: li.querySelector(".author").textContent, text: li.querySelector(".text").textContent };
}

export function removeComment(id) {
  $("comments").querySelector(`li[data-id="${CSS.escape(id)}"]`)?.remove();
  $("stage").querySelector(`.flyer[data-id="${CSS.escape(id)}"]`)?.remove();
}

/** Flies `c` over the stage without listing it (a replayed comment listed already). */
export function flyOnly(c) {
  flyComment(c, SYSTEM_KINDS.has(c.kind), false);
}

// ---- the overlay ----------------------------------------------------------------------------
const lanes = []; // per lane: the time (ms) its last comment's tail has cleared the right edge

function flyComment(c, system, own) {
  const stage = $("stage");
  const width = stage.clientWidth;
  const height = stage.clientHeight;
  if (!width || !height) return;
  const el = document.createElement("span");
  el.className = `flyer${system ? " system" : ""}`;
  el.dataset.id = c.id;
  if (own) el.classList.add("own");
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
