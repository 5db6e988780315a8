//! The WebSocket compression settings (the contract's section 11): whether
//! `permessage-deflate` is negotiated, and the size below which a frame goes out plain.

use super::{ConfigError, bad};

#[derive(Debug, Clone, clap::Args)]
pub struct CompressionSettings {
    /// `on`: negotiate `permessage-deflate` with clients that offer it; `off`: never.
    #[arg(
        long,
        env = "DANMAKU_WS_COMPRESSION",
        value_name = "DANMAKU_WS_COMPRESSION",
        default_value = "on"
    )]
    pub ws_compression: Switch,

    /// Frames shorter than this many bytes go out uncompressed (compressing them saves
    /// little and costs a compression each).
    #[arg(
        long,
        env = "DANMAKU_WS_COMPRESSION_MIN_BYTES",
        value_name = "DANMAKU_WS_COMPRESSION_MIN_BYTES",
        default_value_t = 256
    )]
    pub ws_compression_min_bytes: usize,
}

/// A setting that is `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl CompressionSettings {
    /// The least frame size compressed when compression is on; `None` when it is off.
    pub fn min_bytes(&self) -> Option<usize> {
        (self.ws_compression == Switch::On).then_some(self.ws_compression_min_bytes)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.ws_compression_min_bytes > 1 << 20 {
            return Err(bad(
                "DANMAKU_WS_COMPRESSION_MIN_BYTES",
                "must be at most 1048576",
            ));
        }
        Ok(())
    }
}
