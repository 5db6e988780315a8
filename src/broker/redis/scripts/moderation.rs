//! What moderators change, each in one step on the stream's slot: deletions (a moderator's,
//! or an author's own), bans of every mode with their purge, the settings, and the held
//! comments' list and rejection. Each change is logged (so an instance that was deaf replays
//! it after its repair) and published on the stream's channel.

use std::sync::LazyLock;

use fred::types::scripts::Script;

use super::{LOG_MODERATION, NOW_MS, REPLAY_REMOVE, SETTINGS_JSON, UNPIN_IF};

/// Delete a retained comment: a moderator's (any), or an author's (their own: another's is
/// `-1`); log it, tell the subscribers (`d <id>`), unpin it if it was pinned, and take it out
/// of the replay index.
/// KEYS: hist, channel, moderation log, settings, replay segments, replay counts, replay
/// total. ARGV: id, state ttl ms, the author's user id ("" for a moderator), the replay
/// segments' key prefix. Returns 1 (deleted), 0 (no such comment) or -1 (not theirs).
pub(in crate::broker::redis) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{LOG_MODERATION}{SETTINGS_JSON}{UNPIN_IF}{REPLAY_REMOVE}
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entry == 0 then return 0 end
if ARGV[3] ~= '' then
  local body = cjson.decode(entry[1][2][2])
  if type(body.user) ~= 'table' or body.user.id ~= ARGV[3] then return -1 end
end
redis.call('XDEL', KEYS[1], ARGV[1])
replay_remove({{prefix = ARGV[4], segs = KEYS[5], counts = KEYS[6], total = KEYS[7]}},
  ARGV[1], entry[1][2][2])
log_moderation(KEYS[3], 'd ' .. ARGV[1], ARGV[2])
redis.call('SPUBLISH', KEYS[2], 'd ' .. ARGV[1])
unpin_if(KEYS[4], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
return 1
"#
    ))
});

/// `prune_bans(bans, modes, now)`: the bans that ended leave the list and their modes the
/// hash, so both hold only the bans in force.
const PRUNE_BANS: &str = r#"
local function prune_bans(bans, modes, now)
  for _, user in ipairs(redis.call('ZRANGEBYSCORE', bans, '-inf', now)) do
    redis.call('ZREM', bans, user)
    redis.call('HDEL', modes, user)
  end
end
"#;

/// Ban: a key holding the ban's mode until it ends, the user in the stream's list of bans
/// (scored by the end, ended ones pruned with their modes) with its mode; with purge, every
/// retained comment of the user deleted (each logged and taken out of the replay index, all
/// published in one `d <id> <id> …`, a pinned one unpinned); a `ban` (not a mute or a shadow
/// ban) logged and published (`b <user>`: its sockets close).
/// KEYS: ban key, channel, moderation log, bans, ban modes, hist, settings, replay segments,
/// replay counts, replay total.
/// ARGV: user id, duration ms, state ttl ms, mode (`ban`, `mute`, `shadow`), purge (0/1),
/// the replay segments' key prefix. Returns how many comments the purge deleted.
pub(in crate::broker::redis) static BAN: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{LOG_MODERATION}{SETTINGS_JSON}{UNPIN_IF}{NOW_MS}{PRUNE_BANS}{REPLAY_REMOVE}
local duration = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[4], 'PX', duration)
local now = now_ms()
prune_bans(KEYS[4], KEYS[5], now)
redis.call('ZADD', KEYS[4], now + duration, ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[4])
for _, key in ipairs({{KEYS[4], KEYS[5]}}) do
  if redis.call('PTTL', key) < duration then redis.call('PEXPIRE', key, duration) end
end
local purged = {{}}
if ARGV[5] == '1' then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[6], '-', '+')) do
    local body = cjson.decode(entry[2][2])
    if type(body.user) == 'table' and body.user.id == ARGV[1] then
      redis.call('XDEL', KEYS[6], entry[1])
      replay_remove({{prefix = ARGV[6], segs = KEYS[8], counts = KEYS[9], total = KEYS[10]}},
        entry[1], entry[2][2])
      log_moderation(KEYS[3], 'd ' .. entry[1], ARGV[3])
      unpin_if(KEYS[7], KEYS[2], KEYS[3], entry[1], ARGV[3])
      purged[#purged + 1] = entry[1]
    end
  end
  if #purged > 0 then
    redis.call('SPUBLISH', KEYS[2], 'd ' .. table.concat(purged, ' '))
  end
end
if ARGV[4] == 'ban' then
  log_moderation(KEYS[3], 'b ' .. ARGV[1], ARGV[3])
  redis.call('SPUBLISH', KEYS[2], 'b ' .. ARGV[1])
end
return #purged
"#
    ))
});

/// Unban: the ban key, the list entry and its mode go. KEYS: ban key, bans, ban modes.
/// ARGV: user id. Returns 1 if a ban was in force.
pub(in crate::broker::redis) static UNBAN: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return n
"#,
    )
});

/// The bans in force, soonest to end first: {user, end ms, mode, user, end ms, mode, ...}
/// (a ban of an earlier version, without a mode, is a `ban`). KEYS: bans, ban modes.
pub(in crate::broker::redis) static BANS: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{NOW_MS}{PRUNE_BANS}
prune_bans(KEYS[1], KEYS[2], now_ms())
local list = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {{}}
for i = 1, #list, 2 do
  table.insert(out, list[i])
  table.insert(out, list[i + 1])
  table.insert(out, redis.call('HGET', KEYS[2], list[i]) or 'ban')
end
return out
"#
    ))
});

/// Put the stream's blocked terms and announce them (`t`): every instance reads them anew.
/// KEYS: terms, channel. ARGV: the terms as JSON, settings ttl ms. Returns 1.
pub(in crate::broker::redis) static TERMS: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SPUBLISH', KEYS[2], 't')
return 1
"#,
    )
});

/// Change the settings: the fields given ("" keeps one; pinned `-` unpins), a pin only to a
/// retained comment that everyone sees (a shadowed one is {0, ""} as an unknown one is);
/// if they changed, log and publish them (`s <settings>`).
/// KEYS: settings, hist, channel, moderation log. ARGV: slow mode ms, post roles (a JSON
/// array), pinned, settings ttl ms. Returns {1, "<settings as JSON>"} or {0, ""}.
pub(in crate::broker::redis) static SETTINGS: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{LOG_MODERATION}{SETTINGS_JSON}
if ARGV[3] ~= '' and ARGV[3] ~= '-' then
  local pinned = redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[3])
  if #pinned == 0 or string.sub(pinned[1][2][2], -15) == ',"shadow":true}}' then
    return {{0, ''}}
  end
end
local before = settings_json(KEYS[1])
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'slow', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'roles', ARGV[2]) end
if ARGV[3] == '-' then
  redis.call('HDEL', KEYS[1], 'pinned')
elseif ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'pinned', ARGV[3])
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
local after = settings_json(KEYS[1])
if after ~= before then
  log_moderation(KEYS[4], 's ' .. after, ARGV[4])
  redis.call('SPUBLISH', KEYS[3], 's ' .. after)
end
return {{1, after}}
"#
    ))
});

/// The held comments, oldest first, after those held longer than their time are trimmed.
/// KEYS: held. ARGV: held ms. Returns {how many expired, XRANGE's entries}.
pub(in crate::broker::redis) static HELD: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{NOW_MS}
local expired = redis.call('XTRIM', KEYS[1], 'MINID',
  string.format('%.0f', now_ms() - tonumber(ARGV[1])))
return {{expired, redis.call('XRANGE', KEYS[1], '-', '+')}}
"#
    ))
});

/// Reject a held comment: the held ones older than the hold time leave first (counted); then
/// it leaves the held stream (one expired, approved or rejected already is `{0, n}`) and its
/// author is told (`x <user> <held id>`, logged).
/// KEYS: held, channel, moderation log. ARGV: held id, the author as `<bytes>:<user id>`
/// ("" for none), state ttl ms, held ms. Returns {1 or 0, expired}.
pub(in crate::broker::redis) static REJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{LOG_MODERATION}{NOW_MS}
local expired = redis.call('XTRIM', KEYS[1], 'MINID',
  string.format('%.0f', now_ms() - tonumber(ARGV[4])))
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return {{0, expired}} end
if ARGV[2] ~= '' then
  local dropped = 'x ' .. ARGV[2] .. ' ' .. ARGV[1]
  log_moderation(KEYS[3], dropped, ARGV[3])
  redis.call('SPUBLISH', KEYS[2], dropped)
end
return {{1, expired}}
"#
    ))
});
