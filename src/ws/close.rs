//! The close codes danmaku sends, in one table (also in `docs/behaviour.md`), and how a
//! connection's loop ends.
//!
//! | code | name | when | the client should |
//! |------|------|------|-------------------|
//! | 1001 | going away | the instance is shutting down (after its `reconnect` hints) | reconnect with `after=` |
//! | 1002 | protocol error | a frame broke RFC 6455 (unmasked, reserved bits, bad control frame, unknown opcode) | fix the client |
//! | 1007 | bad data | a text frame was not valid UTF-8 | fix the client |
//! | 1008 | policy | a binary frame, or more than 10 malformed frames in a row | fix the client |
//! | 1009 | too big | a client frame over 4 KiB | fix the client |
//! | 1011 | internal | the server failed this connection | reconnect with backoff |
//! | 1013 | try again later | the broker could not subscribe the stream in time | reconnect with backoff |
//! | 4000 | idle timeout | nothing (not even a pong) arrived for `DANMAKU_IDLE_TIMEOUT_MS` | reconnect with `after=` |
//! | 4001 | slow consumer | the socket fell too far behind its stream, or a write stalled | reconnect with `after=`; it is backfilled |
//! | 4002 | resync | the broker lost comments it could not backfill from history | reconnect with `after=`; `resumed: false` says comments are missing |
//! | 4003 | banned | a moderator banned this user from the stream | do not reconnect |

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    GoingAway,
    ProtocolError,
    BadData,
    Policy,
    TooBig,
    Internal,
    TryAgainLater,
    IdleTimeout,
    SlowConsumer,
    Resync,
    Banned,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            Self::GoingAway => 1001,
            Self::ProtocolError => 1002,
            Self::BadData => 1007,
            Self::Policy => 1008,
            Self::TooBig => 1009,
            Self::Internal => 1011,
            Self::TryAgainLater => 1013,
            Self::IdleTimeout => 4000,
            Self::SlowConsumer => 4001,
            Self::Resync => 4002,
            Self::Banned => 4003,
        }
    }

    /// A short reason for the close frame (at most 123 bytes by RFC 6455).
    pub fn reason(self) -> &'static str {
        match self {
            Self::GoingAway => "server shutting down; reconnect with after=",
            Self::ProtocolError => "protocol error",
            Self::BadData => "invalid UTF-8",
            Self::Policy => "policy violation",
            Self::TooBig => "frame too big",
            Self::Internal => "internal error",
            Self::TryAgainLater => "stream unavailable; try again later",
            Self::IdleTimeout => "idle timeout",
            Self::SlowConsumer => "slow consumer; reconnect with after=",
            Self::Resync => "comments were lost; reconnect with after=",
            Self::Banned => "banned from this stream",
        }
    }
}

/// How a connection's loop (or a step of it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Send a close frame with this reason, then drop the socket.
    Close(CloseReason),
    /// The peer is gone (or the socket broke): nothing more can be sent.
    PeerGone,
}

impl From<CloseReason> for End {
    fn from(reason: CloseReason) -> Self {
        Self::Close(reason)
    }
}
