//! The stream's epoch: made with its first key, replaced when its history lost a tail.

use std::sync::LazyLock;

use fred::types::scripts::Script;

use super::NEW_EPOCH;

/// The stream's epoch: made when the stream has none, so it changes exactly when the
/// stream's keys were lost (a restart without persistence, every key expired).
/// KEYS: epoch. ARGV: a new epoch's tag, state ttl ms. Returns the epoch.
pub(in crate::broker::redis) static EPOCH: LazyLock<Script> = LazyLock::new(|| {
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
pub(in crate::broker::redis) static EPOCH_AFTER: LazyLock<Script> = LazyLock::new(|| {
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
