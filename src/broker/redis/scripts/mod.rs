//! Lua scripts, each touching the keys of one stream only (one slot), so each runs
//! atomically on the node that owns the stream: [`publish`] (publishing, the history, approving
//! a held comment), [`moderation`] (deletions, bans, settings, held comments), [`replay`] (the
//! index by media time), [`epoch`] and [`viewers`]. The pieces several scripts share are here, as Lua text they put first.

mod epoch;
mod moderation;
mod publish;
mod replay;
mod viewers;

pub(super) use epoch::{EPOCH, EPOCH_AFTER};
pub(super) use moderation::{BAN, BANS, DELETE, HELD, REJECT, SETTINGS, TERMS, UNBAN};
pub(super) use publish::{APPROVE, HISTORY, PUBLISH};
pub(super) use replay::{REPLAY, SEGMENT_MS};
use replay::{REPLAY_ADD, REPLAY_REMOVE};
pub(super) use viewers::{LEASE, VIEWERS};

/// `new_epoch(tag)`: a new epoch `<ms>.<tag>`, made on Redis's clock (the one that stamps
/// comment ids), so an id older than the epoch is known to be of an earlier one.
const NEW_EPOCH: &str = r#"
local function new_epoch(tag)
  local t = redis.call('TIME')
  return t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)) .. '.' .. tag
end
"#;

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

/// `append(hist, channel, count, trimmed, body, cap, slack, ttl)`: a comment into the
/// history (trimmed back to `cap` once `cap + slack` long, the newest trimmed id kept),
/// counted, and published (`c <id> <body>`); returns `<id> <body>`.
const APPEND: &str = r#"
local function append(hist, channel, count, trimmed, body, cap, slack, ttl)
  local id = redis.call('XADD', hist, '*', 'b', body)
  local len = redis.call('XLEN', hist)
  if len > cap + slack then
    local victims = redis.call('XRANGE', hist, '-', '+', 'COUNT', len - cap)
    redis.call('SET', trimmed, victims[#victims][1], 'PX', ttl)
    redis.call('XTRIM', hist, 'MAXLEN', cap)
  end
  redis.call('PEXPIRE', hist, ttl)
  redis.call('PEXPIRE', trimmed, ttl)
  redis.call('INCR', count)
  redis.call('PEXPIRE', count, ttl)
  local message = id .. ' ' .. body
  redis.call('SPUBLISH', channel, 'c ' .. message)
  return message
end
"#;

/// `settings_json(key)`: the stream's settings hash as the settings object of the contract
/// (`{"slow_mode_ms", "post_roles", "pinned"}`); the roles are stored as their JSON array.
const SETTINGS_JSON: &str = r#"
local function settings_json(key)
  local s = redis.call('HMGET', key, 'slow', 'roles', 'pinned')
  local pinned = 'null'
  if s[3] then pinned = '"' .. s[3] .. '"' end
  return '{"slow_mode_ms":' .. (s[1] or '0') .. ',"post_roles":' .. (s[2] or '[]')
    .. ',"pinned":' .. pinned .. '}'
end
"#;

/// `unpin_if(settings, channel, log, id, ttl)`: a deleted comment that was pinned is unpinned,
/// and the new settings logged and published (`s <settings>`). Needs [`LOG_MODERATION`] and
/// [`SETTINGS_JSON`] before it.
const UNPIN_IF: &str = r#"
local function unpin_if(settings, channel, log, id, ttl)
  if redis.call('HGET', settings, 'pinned') == id then
    redis.call('HDEL', settings, 'pinned')
    local message = 's ' .. settings_json(settings)
    log_moderation(log, message, ttl)
    redis.call('SPUBLISH', channel, message)
  end
end
"#;

/// `now_ms()`: Redis's clock, in milliseconds.
const NOW_MS: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
"#;
