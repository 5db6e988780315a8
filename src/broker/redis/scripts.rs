//! Lua scripts, each touching the keys of one stream only (one slot), so each runs
//! atomically on the node that owns the stream.

use std::sync::LazyLock;

use fred::types::scripts::Script;

/// `new_epoch(tag)`: a new epoch `<ms>.<tag>`, made on Redis's clock (the one that stamps
/// comment ids), so an id older than the epoch is known to be of an earlier one.
const NEW_EPOCH: &str = r#"
local function new_epoch(tag)
  local t = redis.call('TIME')
  return t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)) .. '.' .. tag
end
"#;

/// Publish: idempotency check, the author's rate limit, ban check, the stream's epoch made
/// if it has none (before the comment, so no comment of an epoch is older than it), append
/// to the history, trim it (remembering the newest trimmed id), count, remember the
/// idempotency key, and `SPUBLISH` — in one step, so history and live delivery never
/// disagree, and a user's rate holds across every instance.
///
/// KEYS: hist, channel, count, trimmed, idempotency key, ban key, rate bucket, epoch.
/// ARGV: body, history cap, trim slack, idempotency ttl ms, state ttl ms, has key (0/1),
/// has user (0/1), rate per second ("" for none), burst, a new epoch's tag.
/// Returns {1, "<id> <body>"} (new), {0, "<id> <body>"} (duplicate), {-1, ""} (banned) or
/// {-2, "<ms until a token>"} (rate limited).
pub(super) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{NEW_EPOCH}
if ARGV[6] == '1' then
  local prior = redis.call('GET', KEYS[5])
  if prior then return {{0, prior}} end
end
if ARGV[8] ~= '' then
  local rate, burst = tonumber(ARGV[8]), tonumber(ARGV[9])
  local t = redis.call('TIME')
  local now = t[1] * 1000 + t[2] / 1000
  local bucket = redis.call('HMGET', KEYS[7], 'tokens', 'at')
  local tokens = tonumber(bucket[1]) or burst
  local at = tonumber(bucket[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
  if tokens < 1 then return {{-2, tostring(math.ceil((1 - tokens) * 1000 / rate))}} end
  redis.call('HSET', KEYS[7], 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[7], math.ceil(burst * 1000 / rate) + 1000)
end
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[6]) == 1 then return {{-1, ''}} end
if redis.call('EXISTS', KEYS[8]) == 0 then redis.call('SET', KEYS[8], new_epoch(ARGV[10])) end
redis.call('PEXPIRE', KEYS[8], ARGV[5])
local id = redis.call('XADD', KEYS[1], '*', 'b', ARGV[1])
local cap = tonumber(ARGV[2])
local len = redis.call('XLEN', KEYS[1])
if len > cap + tonumber(ARGV[3]) then
  local victims = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - cap)
  redis.call('SET', KEYS[4], victims[#victims][1], 'PX', ARGV[5])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', cap)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[4], ARGV[5])
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
local message = id .. ' ' .. ARGV[1]
if ARGV[6] == '1' then redis.call('SET', KEYS[5], message, 'PX', ARGV[4]) end
redis.call('SPUBLISH', KEYS[2], 'c ' .. message)
return {{1, message}}
"#
    ))
});

/// History reads. KEYS: hist, trimmed. ARGV: mode, count, after id.
/// mode `latest`: {"", newest `count` entries, newest first}.
/// mode `after`: {trimmed id or "", oldest `count` entries newer than the id}.
/// The range is read before the trim mark, so a trim in between can only make the answer
/// more cautious.
pub(super) static HISTORY: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
if ARGV[1] == 'latest' then
  return {'', redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[2])}
end
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[3], '+', 'COUNT', ARGV[2])
local trimmed = redis.call('GET', KEYS[2]) or ''
return {trimmed, entries}
"#,
    )
});

/// Appends `ARGV[1]` (a channel message) to the moderation log in KEYS[1], so a subscriber
/// that was deaf at the time can replay it. The log keeps the newest 1,000 events for a day.
const LOG_MODERATION: &str = r#"
local function log_moderation(key, message, ttl)
  local t = redis.call('TIME')
  redis.call('ZADD', key, t[1] * 1000 + math.floor(t[2] / 1000), message)
  redis.call('ZREMRANGEBYRANK', key, 0, -1001)
  redis.call('PEXPIRE', key, ttl)
end
"#;

/// Delete: XDEL and, if it existed, log it and tell the subscribers.
/// KEYS: hist, channel, moderation log. ARGV: id, state ttl ms.
pub(super) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{LOG_MODERATION}
local n = redis.call('XDEL', KEYS[1], ARGV[1])
if n == 1 then
  log_moderation(KEYS[3], 'd ' .. ARGV[1], ARGV[2])
  redis.call('SPUBLISH', KEYS[2], 'd ' .. ARGV[1])
end
return n
"#
    ))
});

/// Ban: a key with the ban's expiry, the user in the stream's list of bans (scored by the
/// ban's end, ended ones pruned), log it, then tell the subscribers.
/// KEYS: ban key, channel, moderation log, bans. ARGV: user id, duration ms, state ttl ms.
pub(super) static BAN: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{LOG_MODERATION}
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
if redis.call('PTTL', KEYS[4]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[4], ARGV[2])
end
log_moderation(KEYS[3], 'b ' .. ARGV[1], ARGV[3])
redis.call('SPUBLISH', KEYS[2], 'b ' .. ARGV[1])
return 1
"#
    ))
});

/// Unban: the ban key and the list entry go. KEYS: ban key, bans. ARGV: user id.
/// Returns 1 if a ban was in force.
pub(super) static UNBAN: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
"#,
    )
});

/// The bans in force, soonest to end first: {user, end ms, user, end ms, ...}.
/// KEYS: bans.
pub(super) static BANS: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t[1] * 1000 + math.floor(t[2] / 1000))
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
"#,
    )
});

/// The stream's epoch: made when the stream has none, so it changes exactly when the
/// stream's keys were lost (a restart without persistence, every key expired).
/// KEYS: epoch. ARGV: a new epoch's tag, state ttl ms. Returns the epoch.
pub(super) static EPOCH: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{NEW_EPOCH}
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], new_epoch(ARGV[1])) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('GET', KEYS[1])
"#
    ))
});

/// The stream's epoch after a repair, checking first that the newest comment this instance
/// delivered (ARGV[3]) is still accounted for: in the history, trimmed off it (at or before
/// the trim mark; `0-0`, an empty history's baseline, always is), or deleted (in the
/// moderation log). If it is none of these, the history lost its tail (a failover to a
/// replica that never got it): the epoch is replaced and the new one published
/// (`e <epoch>`), so every instance resynchronises its viewers and no resume crosses the gap. Only an instance that still knows the current epoch (ARGV[4])
/// replaces it, so a loss seen by several instances makes one new epoch, not one each.
/// KEYS: epoch, hist, trimmed, moderation log, channel. ARGV: a new epoch's tag, state ttl
/// ms, last id, the epoch this instance knows ("" for none). Returns {1 if replaced else 0,
/// epoch}.
pub(super) static EPOCH_AFTER: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{NEW_EPOCH}
local function at_or_before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return false end
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as <= bs)
end
local last = ARGV[3]
if ARGV[4] ~= '' and redis.call('GET', KEYS[1]) == ARGV[4]
  and #redis.call('XRANGE', KEYS[2], last, last) == 0
  and not at_or_before(last, redis.call('GET', KEYS[3]) or '0-0')
  and not redis.call('ZSCORE', KEYS[4], 'd ' .. last) then
  local epoch = new_epoch(ARGV[1])
  redis.call('SET', KEYS[1], epoch, 'PX', ARGV[2])
  redis.call('SPUBLISH', KEYS[5], 'e ' .. epoch)
  return {{1, epoch}}
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], new_epoch(ARGV[1])) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {{0, redis.call('GET', KEYS[1])}}
"#
    ))
});

/// Viewer counts: report this instance's local count (unless it is -1), forget expired
/// reports, and answer {sum over live instances, peak, comments ever}.
/// KEYS: viewers hash, peak, count. ARGV: instance, local count, now ms, report ttl ms,
/// state ttl ms.
pub(super) static VIEWERS: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local mine = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if mine > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], mine .. ':' .. (now + tonumber(ARGV[4])))
elseif mine == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local all = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #all, 2 do
  local count, expires = string.match(all[i + 1], '^(%d+):(%d+)$')
  if count == nil or tonumber(expires) < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    sum = sum + tonumber(count)
  end
end
if #all > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
local peak = tonumber(redis.call('GET', KEYS[2]) or '0')
-- A stream nobody ever commented on keeps its peak only as long as its viewer reports,
-- so anonymous handshakes to made-up streams leave nothing behind for long.
local peak_ttl = ARGV[4]
if redis.call('EXISTS', KEYS[3]) == 1 then peak_ttl = ARGV[5] end
if sum > peak then
  peak = sum
  redis.call('SET', KEYS[2], peak, 'PX', peak_ttl)
elseif mine > 0 then
  redis.call('PEXPIRE', KEYS[2], peak_ttl)
end
local comments = tonumber(redis.call('GET', KEYS[3]) or '0')
return {sum, peak, comments}
"#,
    )
});
