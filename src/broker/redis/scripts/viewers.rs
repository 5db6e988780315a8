//! Viewer counts summed across instances.

use std::sync::LazyLock;

use fred::types::scripts::Script;

/// Viewer counts: report this instance's local count (unless it is -1), forget expired
/// reports, and answer {sum over live instances, peak, comments ever, version} (all as
/// strings; the version is the Redis time of the sum in µs). When the sum changed (this
/// instance's count did, or an expired report was forgotten), announce it on the stream's
/// channel as `v <sum> <version>`.
/// KEYS: viewers hash, peak, count, channel. ARGV: instance, local count, now ms, report ttl
/// ms, state ttl ms.
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
local time = redis.call('TIME')
local version = time[1] .. string.format('%06d', tonumber(time[2]))
if changed then redis.call('SPUBLISH', KEYS[4], 'v ' .. sum .. ' ' .. version) end
return {tostring(sum), tostring(peak), tostring(comments), version}
"#,
    )
});
