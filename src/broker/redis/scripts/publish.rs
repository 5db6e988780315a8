//! Publishing: the checks and the append of a comment, history reads, and approving a held
//! comment (published as a new one).

use std::sync::LazyLock;

use fred::types::scripts::Script;

use super::{APPEND, LOG_MODERATION, NEW_EPOCH, NOW_MS, REPLAY_ADD};

/// Publish, in one step, so history and live delivery never disagree and every rule holds
/// across instances: the idempotency check; the author's ban (`ban`/`mute` refuse, `shadow`
/// shadows); for a viewer's comment that is not a moderator's, the stream's post roles and
/// slow mode; the author's rate limit; the stream's epoch made if it has none (before the
/// comment, so no comment of an epoch is older than it); then either the append to the
/// history (trimmed, counted, published `c <id> <body>`) or, for a held comment, the append
/// to the held stream (trimmed to an hour and a count, published to moderators
/// `h <held id> <body>`; not logged, so a hold flood cannot push deletions out of the
/// moderation log: the held stream is the moderators' record); the idempotency key
/// remembered; a public comment added to the replay index (unless replay is off).
///
/// The stream's settings and blocked terms live as long as it is posted to.
/// KEYS: hist, channel, count, trimmed, idempotency key, ban key, rate bucket, epoch,
/// settings, slow-mode mark, held, blocked terms, replay segments, replay counts, replay
/// total.
/// ARGV: body, history cap, trim slack, idempotency ttl ms, state ttl ms, has key (0/1),
/// a user's own comment (0/1), rate per second ("" for none), burst, a new epoch's tag, route
/// (`p` public, `s` shadow, `h` hold), exempt from roles and slow mode (0/1), the author's
/// roles (newline-separated), most held, held ms, settings ttl ms, media time ms, replay cap,
/// replay retention ms (0: off), the replay segments' key prefix.
/// Returns {1, "<id> <body>"} (new), {0, "<id> <body>"} (duplicate), {3, "<held id> <body>",
/// held comments expired by age or count} (held), {4, …} (held, duplicate), {-1, ""} (banned), {-2, "<ms until a token>"} (rate
/// limited), {-3, ""} (role required) or {-4, "<ms left>"} (slow mode).
pub(in crate::broker::redis) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{NEW_EPOCH}{APPEND}{NOW_MS}{REPLAY_ADD}
if ARGV[6] == '1' then
  local prior = redis.call('GET', KEYS[5])
  if prior then
    if string.sub(prior, 1, 2) == 'h ' then return {{4, string.sub(prior, 3)}} end
    return {{0, prior}}
  end
end
local route = ARGV[11]
local own = ARGV[7] == '1'
if own then
  local mode = redis.call('GET', KEYS[6])
  if mode == 'shadow' then route = 's' elseif mode then return {{-1, ''}} end
end
local checked = own and ARGV[12] == '0'
local slow = 0
if checked then
  local settings = redis.call('HMGET', KEYS[9], 'roles', 'slow')
  if settings[1] and settings[1] ~= '[]' then
    local mine = {{}}
    for role in string.gmatch(ARGV[13], '[^\n]+') do mine[role] = true end
    local allowed = false
    for _, role in ipairs(cjson.decode(settings[1])) do
      if mine[role] then allowed = true end
    end
    if not allowed then return {{-3, ''}} end
  end
  slow = tonumber(settings[2] or '0')
  if slow > 0 then
    local wait = redis.call('PTTL', KEYS[10])
    if wait > 0 then return {{-4, tostring(wait)}} end
  end
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
if slow > 0 then redis.call('SET', KEYS[10], '1', 'PX', slow) end
if redis.call('EXISTS', KEYS[8]) == 0 then redis.call('SET', KEYS[8], new_epoch(ARGV[10])) end
redis.call('PEXPIRE', KEYS[8], ARGV[5])
redis.call('PEXPIRE', KEYS[9], ARGV[16])
redis.call('PEXPIRE', KEYS[12], ARGV[16])
local body = ARGV[1]
if route == 's' then body = string.sub(body, 1, -2) .. ',"shadow":true}}' end
if route == 'h' then
  local expired = redis.call('XTRIM', KEYS[11], 'MINID',
    string.format('%.0f', now_ms() - tonumber(ARGV[15])))
  local id = redis.call('XADD', KEYS[11], '*', 'b', body)
  expired = expired + redis.call('XTRIM', KEYS[11], 'MAXLEN', ARGV[14])
  redis.call('PEXPIRE', KEYS[11], ARGV[15])
  local message = id .. ' ' .. body
  if ARGV[6] == '1' then redis.call('SET', KEYS[5], 'h ' .. message, 'PX', ARGV[4]) end
  redis.call('SPUBLISH', KEYS[2], 'h ' .. message)
  return {{3, message, expired}}
end
local message = append(KEYS[1], KEYS[2], KEYS[3], KEYS[4], body, tonumber(ARGV[2]),
  tonumber(ARGV[3]), ARGV[5])
if ARGV[6] == '1' then redis.call('SET', KEYS[5], message, 'PX', ARGV[4]) end
if route == 'p' and ARGV[19] ~= '0' then
  replay_add({{prefix = ARGV[20], segs = KEYS[13], counts = KEYS[14], total = KEYS[15],
    cap = tonumber(ARGV[18]), keep = tonumber(ARGV[19])}}, message, tonumber(ARGV[17]))
end
return {{1, message}}
"#
    ))
});

/// History reads. KEYS: hist, trimmed. ARGV: mode, count, after id.
/// mode `latest`: {"", newest `count` entries, newest first}.
/// mode `after`: {trimmed id or "", oldest `count` entries newer than the id}.
/// The range is read before the trim mark, so a trim in between can only make the answer
/// more cautious.
pub(in crate::broker::redis) static HISTORY: LazyLock<Script> = LazyLock::new(|| {
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

/// Approve a held comment: the held ones older than the hold time leave first (counted);
/// then it leaves the held stream (one expired, approved or rejected already is `{0, "", n}`)
/// and is published as a new comment with the body given (its `ts` now); its author is told
/// (`r <user> <held id> <id>`, logged); it is added to the replay index.
/// KEYS: held, hist, channel, count, trimmed, epoch, moderation log, replay segments, replay
/// counts, replay total.
/// ARGV: held id, body, history cap, trim slack, state ttl ms, a new epoch's tag, the author
/// as `<bytes>:<user id>` ("" for none), held ms, media time ms, replay cap, replay retention
/// ms (0: off), the replay segments' key prefix. Returns {1, "<id> <body>", expired} or
/// {0, "", expired}.
pub(in crate::broker::redis) static APPROVE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        r#"{NEW_EPOCH}{APPEND}{LOG_MODERATION}{NOW_MS}{REPLAY_ADD}
local expired = redis.call('XTRIM', KEYS[1], 'MINID',
  string.format('%.0f', now_ms() - tonumber(ARGV[8])))
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return {{0, '', expired}} end
if redis.call('EXISTS', KEYS[6]) == 0 then redis.call('SET', KEYS[6], new_epoch(ARGV[6])) end
redis.call('PEXPIRE', KEYS[6], ARGV[5])
local message = append(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], tonumber(ARGV[3]),
  tonumber(ARGV[4]), ARGV[5])
if ARGV[7] ~= '' then
  local released = 'r ' .. ARGV[7] .. ' ' .. ARGV[1] .. ' ' .. string.match(message, '^(%S+)')
  log_moderation(KEYS[7], released, ARGV[5])
  redis.call('SPUBLISH', KEYS[3], released)
end
if ARGV[11] ~= '0' then
  replay_add({{prefix = ARGV[12], segs = KEYS[8], counts = KEYS[9], total = KEYS[10],
    cap = tonumber(ARGV[10]), keep = tonumber(ARGV[11])}}, message, tonumber(ARGV[9]))
end
return {{1, message, expired}}
"#
    ))
});
