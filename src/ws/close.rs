//! The close codes danmaku sends, and how a connection's loop ends.
//!
//! [`CloseReason`] is the one list of them, each with its code, its name and the reason sent
//! in the close frame. `docs/behaviour.md` ("Close codes") says for each when it is sent and
//! what a client should do; a test holds its table to this list, code by code and name by
//! name, so the two cannot drift apart again.

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
    /// Every close code danmaku sends, in the order of the documented table.
    pub const ALL: [Self; 11] = [
        Self::GoingAway,
        Self::ProtocolError,
        Self::BadData,
        Self::Policy,
        Self::TooBig,
        Self::Internal,
        Self::TryAgainLater,
        Self::IdleTimeout,
        Self::SlowConsumer,
        Self::Resync,
        Self::Banned,
    ];

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

    /// Its name in the documented table.
    pub fn name(self) -> &'static str {
        match self {
            Self::GoingAway => "going away",
            Self::ProtocolError => "protocol error",
            Self::BadData => "bad data",
            Self::Policy => "policy",
            Self::TooBig => "too big",
            Self::Internal => "internal",
            Self::TryAgainLater => "try again later",
            Self::IdleTimeout => "idle timeout",
            Self::SlowConsumer => "slow consumer",
            Self::Resync => "resync",
            Self::Banned => "banned",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of `docs/behaviour.md` lists exactly these codes, with these names, in this
    /// order.
    #[test]
    fn the_documented_table_is_this_list() {
        let docs = include_str!("../../docs/behaviour.md");
        let table = docs
            .split("## Close codes")
            .nth(1)
            .expect("a Close codes section")
            .split("\n## ")
            .next()
            .unwrap();
        let rows: Vec<(u16, &str)> = table
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let code = cells.get(1)?.parse().ok()?;
                Some((code, *cells.get(2)?))
            })
            .collect();
        let list: Vec<(u16, &str)> = CloseReason::ALL
            .iter()
            .map(|r| (r.code(), r.name()))
            .collect();
        assert_eq!(rows, list);
        for reason in CloseReason::ALL {
            assert!(reason.reason().len() <= 123, "{reason:?}");
        }
    }
}
