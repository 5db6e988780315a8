//! The replay settings (the contract's section 10): how long, and how many, comments a
//! stream keeps for replay by media time.

use super::{Config, ConfigError, bad};
use crate::domain::ReplayLimits;

impl Config {
    pub fn replay(&self) -> ReplayLimits {
        ReplayLimits {
            retention_s: self.replay_retention_s,
            max_comments: self.replay_max_comments,
        }
    }

    pub(super) fn validate_replay(&self) -> Result<(), ConfigError> {
        if self.replay_retention_s > 30 * 86_400 {
            return Err(bad(
                "DANMAKU_REPLAY_RETENTION_S",
                "must be at most 2592000 (30 days)",
            ));
        }
        if !(1..=10_000_000).contains(&self.replay_max_comments) {
            return Err(bad(
                "DANMAKU_REPLAY_MAX_COMMENTS",
                "must be between 1 and 10000000",
            ));
        }
        Ok(())
    }
}
