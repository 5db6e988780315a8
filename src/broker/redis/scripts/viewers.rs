//! Viewer counts summed across instances.

use std::sync::LazyLock;

use fred::types::scripts::Script;

/// Viewer counts: report this instance's local count (unless it is -1), forget the reports
/// of gone instances (ARGV[7] on) and expired reports, and answer {sum over live instances,
/// peak, comments ever, version} (all as strings; the version is the Redis time of the sum
/// in µs). When the sum changed (this instance's count did, or a report was forgotten),
/// announce it on the stream's channel as `v <sum> <version>`.
/// KEYS: viewers hash, peak, count, channel. ARGV: instance, local count, now ms, report ttl
/// ms, state ttl ms, ttl ms of the peak of a stream with no viewers and no comments, gone
/// instances….
pub(in crate::broker::redis) static VIEWERS: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local mine = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local changed = false
if mine >= 0 then
  local old = redis.call('HGET', KEYS[1], ARGV[1])
  local was = old and tonumber(string.match(old, '^(%d+):')) or 0
  changed = was ~= mine
end
if mine > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], mine .. ':' .. (now + tonumber(ARGV[4])))
elseif mine == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
for i = 7, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then changed = true end
end
local all = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #all, 2 do
  local count, expires = string.match(all[i + 1], '^(%d+):(%d+)$')
  if count == nil or tonumber(expires) < now then
    redis.call('HDEL', KEYS[1], all[i])
    changed = true
  else
    sum = sum + tonumber(count)
  end
end
if #all > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
local peak = tonumber(redis.call('GET', KEYS[2]) or '0')
-- A stream nobody ever commented on keeps its peak only as long as its viewer reports,
-- and not long once it has no viewers, so anonymous handshakes to made-up streams leave
-- nothing behind for long.
local peak_ttl = ARGV[4]
if redis.call('EXISTS', KEYS[3]) == 1 then
  peak_ttl = ARGV[5]
elseif sum == 0 then
  peak_ttl = ARGV[6]
  if peak > 0 then redis.call('PEXPIRE', KEYS[2], peak_ttl) end
end
if sum > peak then
  peak = sum
  redis.call('SET', KEYS[2], peak, 'PX', peak_ttl)
elseif mine > 0 then
  redis.call('PEXPIRE', KEYS[2], peak_ttl)
end
local comments = tonumber(redis.call('GET', KEYS[3]) or '0')
local time = redis.call('TIME')
local version = time[1] .. string.format('%06d', tonumber(time[2]))
if changed then redis.call('SPUBLISH', KEYS[4], 'v ' .. sum .. ' ' .. version) end
return {tostring(sum), tostring(peak), tostring(comments), version}
"#,
    )
});

/// An instance's lease: renew this instance's (ARGV[1]) to the Redis time plus ARGV[2] ms,
/// forget leases that ran out more than ARGV[3] ms ago, and answer how this instance's own
/// stood before this renewal (`0` held, `1` run out, `2` absent: never taken, or Redis lost
/// it) followed by the instances whose leases have run out.
/// KEYS: the lease set.
pub(in crate::broker::redis) static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]))
local lapsed = '0'
if old == 0 then lapsed = '2' elseif old < now then lapsed = '1' end
local answer = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
table.insert(answer, 1, lapsed)
return answer
"#,
    )
});
