// The simulated player: the media clock of the page, the moment of the stream it shows.
// Live, it runs the delay behind real time (0–30 s, the slider: an HLS player's delay);
// scrubbed back (the bar, up to an hour), it plays the VOD from there, and the page replays
// that stretch's chat on the same clock, a window at a time. The library hands each comment
// to the page when this clock reaches its moment, so the overlay follows the picture.

const $ = (id) => document.getElementById(id);
const REPLAY_SPAN_MS = 600000; // one replay request
const REFILL_BEFORE_MS = 60000; // fetch the next window this long before the clock needs it

const player = {
  delayMs: 0,
  vod: null, // {media, wall}: the moment scrubbed to, and when; null: live
  replayedTo: 0, // media ms up to which the VOD's chat was fetched
  replay: (from, to, options) => Promise.resolve([from, to, options]), // stream.replay
  clear: () => {}, // stream.clearReplay
  replace: false, // the next fetch starts a new playback (a scrub)
  timer: null,
};

/** The media time the player shows now (Unix ms). */
export function now() {
  if (player.vod) return player.vod.media + (Date.now() - player.vod.wall);
  return Date.now() - player.delayMs;
}

/** Whether it plays the VOD (scrubbed back) rather than live. */
export function playingVod() {
  return player.vod !== null;
}

/** Wires the controls; `replay(from, to, {replace})` fetches a stretch of chat onto the
 *  clock, `clear()` forgets what a replay still has waiting. */
export function bind(replay, clear) {
  player.replay = replay;
  player.clear = clear;
  const delay = Number(new URLSearchParams(location.search).get("delay"));
  if (Number.isInteger(delay) && delay >= 0 && delay <= 30) $("delay").value = String(delay);
  $("delay").addEventListener("input", setDelay);
  $("scrub").addEventListener("change", scrub);
  $("go-live").addEventListener("click", goLive);
  setDelay();
  clearInterval(player.timer);
  player.timer = setInterval(tick, 250);
}

function setDelay() {
  player.delayMs = Number($("delay").value) * 1000;
  $("delay-out").textContent = `${$("delay").value} s`;
}

/** Scrubbed: play the VOD from that many seconds before live, and replay its chat. */
function scrub() {
  const back = -Number($("scrub").value);
  if (back <= 0) return goLive();
  const media = Date.now() - player.delayMs - back * 1000;
  player.vod = { media, wall: Date.now() };
  player.replayedTo = media;
  player.replace = true;
  refill();
}

function goLive() {
  player.vod = null;
  player.clear(); // the VOD's chat still waiting would flood the live picture
  $("scrub").value = "0";
}

/** Fetches the next window of the VOD's chat when the clock nears the end of what it has. */
function refill() {
  if (!player.vod) return;
  const t = now();
  if (player.replayedTo - t > REFILL_BEFORE_MS) return;
  const from = Math.max(player.replayedTo, t);
  const to = Math.min(from + REPLAY_SPAN_MS, Date.now() - player.delayMs);
  if (to <= from) return; // fetched up to live: the live chat takes over there
  player.replayedTo = to;
  const replace = player.replace;
  player.replace = false;
  player.replay(from, to, { replace }).catch(() => {
    player.replayedTo = from; // try again at the next tick
    player.replace ||= replace;
  });
}

function tick() {
  refill();
  if (player.vod && now() >= Date.now() - player.delayMs) {
    player.vod = null; // played up to live: seamless, nothing of the VOD waits any more
    $("scrub").value = "0";
  }
  const t = now();
  const behind = Math.round((Date.now() - t) / 1000);
  $("position-out").textContent = player.vod ? `${behind} s back (VOD)` : "live";
  if (player.vod) $("scrub").value = String(-Math.min(3600, behind));
  $("media-clock").textContent = `media ${new Date(t).toISOString().slice(11, 19)}`;
}
