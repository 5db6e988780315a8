//! Media time (the contract's section 10): the wall-clock time of the media moment a
//! comment's author's player showed when posting (from the player's program date time), so
//! each viewer can be shown a comment when their own player reaches that moment.

/// How far behind the accepting instance's clock a comment's media time may be: no player
/// runs more than two minutes behind live.
pub const MEDIA_BEHIND_MS: u64 = 120_000;

/// How far ahead of the accepting instance's clock it may be: clocks disagree a little, no
/// player shows the future.
pub const MEDIA_AHEAD_MS: u64 = 2_000;

/// How long, and how many, comments a stream keeps for replay by media time
/// (`DANMAKU_REPLAY_RETENTION_S`, `DANMAKU_REPLAY_MAX_COMMENTS`; the contract's section 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// Seconds a comment stays replayable after its media time; 0: replay is off.
    pub retention_s: u64,
    pub max_comments: usize,
}

impl ReplayLimits {
    /// A day, a million comments per stream.
    pub const DEFAULT: Self = Self {
        retention_s: 86_400,
        max_comments: 1_000_000,
    };

    pub fn is_off(self) -> bool {
        self.retention_s == 0 || self.max_comments == 0
    }

    pub fn retention_ms(self) -> u64 {
        self.retention_s.saturating_mul(1000)
    }
}

/// The widest replay window a request may ask for: ten minutes.
pub const MAX_REPLAY_WINDOW_MS: u64 = 600_000;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "media_ts must be a Unix time in ms within 120 s before and 2 s after the server's clock ({now})"
)]
pub struct MediaTimeError {
    pub now: u64,
}

/// `media_ts` as a comment accepted at `now` (the instance's clock, ms) may carry it.
pub fn check_media_ts(media_ts: u64, now: u64) -> Result<u64, MediaTimeError> {
    let earliest = now.saturating_sub(MEDIA_BEHIND_MS);
    if (earliest..=now + MEDIA_AHEAD_MS).contains(&media_ts) {
        Ok(media_ts)
    } else {
        Err(MediaTimeError { now })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_two_minutes_behind_to_two_seconds_ahead() {
        let now = 1_800_000_000_000;
        for ok in [now, now - 120_000, now + 2_000, now - 30_000] {
            assert_eq!(check_media_ts(ok, now), Ok(ok));
        }
        for bad in [now - 120_001, now + 2_001, 0, u64::MAX] {
            assert_eq!(check_media_ts(bad, now), Err(MediaTimeError { now }));
        }
    }
}
