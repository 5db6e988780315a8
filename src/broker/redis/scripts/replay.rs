//! The replay index (the contract's section 10): a stream's public comments by media time,
//! in ten-minute segments, each a sorted set `danmaku:{<id>}:replay:<segment>` of `<id>
//! <body>` scored by media time (ms), expiring when its last moment leaves the retention.
//! `replay-segs` (sorted set of segment numbers), `replay-counts` (hash segment → comments)
//! and `replay-n` (all of them) let the cap drop the oldest media time first. The segments'
//! names are made in the script from the stream's prefix (all in the stream's slot).
//!
//! Both functions take `r`: `{prefix, segs, counts, total, cap, keep}` (`keep`: retention
//! ms), and need [`NOW_MS`](super::NOW_MS) before them.

/// Ten minutes: the span of one segment (a replay window touches at most two).
pub(in crate::broker::redis) const SEGMENT_MS: u64 = 600_000;

/// `replay_add(r, message, media)`: `message` (`<id> <body>`) into its media time's
/// segment; segments past the retention forgotten; over the cap, the oldest media time goes.
pub(super) const REPLAY_ADD: &str = r#"
local function replay_forget(r, seg)
  local n = tonumber(redis.call('HGET', r.counts, seg) or '0')
  redis.call('HDEL', r.counts, seg)
  redis.call('ZREM', r.segs, seg)
  redis.call('UNLINK', r.prefix .. seg)
  return n
end
local function replay_add(r, message, media)
  local now = now_ms()
  local seg = math.floor(media / 600000)
  local key = r.prefix .. seg
  redis.call('ZADD', key, media, message)
  redis.call('PEXPIRE', key, math.max(1000, (seg + 1) * 600000 + r.keep - now))
  redis.call('ZADD', r.segs, seg, seg)
  redis.call('HINCRBY', r.counts, seg, 1)
  local n = tonumber(redis.call('GET', r.total) or '0') + 1
  local last = math.floor((now - r.keep) / 600000) - 1
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', r.segs, '-inf', last)) do
    n = n - replay_forget(r, old)
  end
  while n > r.cap do
    local oldest = redis.call('ZRANGE', r.segs, 0, 0)[1]
    if not oldest then break end
    if #redis.call('ZPOPMIN', r.prefix .. oldest) == 0 then
      n = n - replay_forget(r, oldest)
    else
      n = n - 1
      if redis.call('HINCRBY', r.counts, oldest, -1) <= 0 then replay_forget(r, oldest) end
    end
  end
  redis.call('SET', r.total, math.max(n, 0))
  for _, k in ipairs({r.segs, r.counts, r.total}) do
    redis.call('PEXPIRE', k, r.keep + 1200000)
  end
end
"#;

/// `replay_remove(r, id, body)`: a deleted comment (its stored body) leaves the index.
pub(super) const REPLAY_REMOVE: &str = r#"
local function replay_remove(r, id, body)
  local c = cjson.decode(body)
  local media = c.media_ts or c.ts
  if type(media) ~= 'number' then return end
  local seg = math.floor(media / 600000)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', r.prefix .. seg, media, media)) do
    if string.sub(m, 1, #id + 1) == id .. ' ' then
      redis.call('ZREM', r.prefix .. seg, m)
      redis.call('HINCRBY', r.counts, seg, -1)
      if tonumber(redis.call('GET', r.total) or '0') > 0 then redis.call('DECR', r.total) end
      return
    end
  end
end
"#;

/// The comments of a replay window: KEYS the segments it touches (one or two), ARGV from
/// and to (ms, `to` excluded). Returns the `<id> <body>` members, segment by segment.
pub(in crate::broker::redis) static REPLAY: std::sync::LazyLock<fred::types::scripts::Script> =
    std::sync::LazyLock::new(|| {
        fred::types::scripts::Script::from_lua(
            r#"
local out = {}
for _, key in ipairs(KEYS) do
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, ARGV[1], '(' .. ARGV[2])) do
    out[#out + 1] = m
  end
end
return out
"#,
        )
    });
