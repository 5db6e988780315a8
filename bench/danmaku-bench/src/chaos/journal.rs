//! The chaos soak's logs, one text line per event, written while it runs and read back by the
//! verifier: what every viewer saw (one file per stream, `viewers-<stream>.log`) and what was
//! published (`published.log`, the posters' acks and the services' answers).
//!
//! A viewer line is `<viewer> <unix ms> <event> <fields…>`, the viewer's lines in the order it
//! lived them:
//!
//! | event | fields | what happened |
//! |---|---|---|
//! | `o` | instance, `after` id or `-` | a connection attempt to that instance began |
//! | `f` | HTTP status or `0` | the attempt failed before `init` (refused, reset, timed out) |
//! | `i` | resumed `0`/`1`, epoch, ids… | `init`, with the ids of its comments |
//! | `c` | skipped, ids… | a `comments` frame |
//! | `r` | `after_ms` | a `reconnect` hint |
//! | `x` | close code, `0` without a close frame | the connection ended |
//!
//! A published line is `<stream> <id> <source>`, source `ws` (an `ack`), `http` (a `201` or
//! `200`) or `end` (the stream's end marker). Ids only, no texts: a 30-minute run with 1,000
//! viewers at two comments a second each writes about 3.6 million ids, some 100 MB. It imports
//! nothing of the crate.

use std::fmt;
use std::str::FromStr;

/// A comment id, `<ms>-<seq>`, ordered as the contract orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CommentId {
    pub ms: u64,
    pub seq: u64,
}

impl FromStr for CommentId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        Ok(Self {
            ms: ms.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

impl fmt::Display for CommentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One event of a viewer's life; `t` is the Unix time in ms when it happened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Open {
        t: u64,
        instance: usize,
        after: Option<CommentId>,
    },
    Failed {
        t: u64,
        status: u16,
    },
    Init {
        t: u64,
        resumed: bool,
        epoch: String,
        ids: Vec<CommentId>,
    },
    Comments {
        t: u64,
        skipped: u64,
        ids: Vec<CommentId>,
    },
    Hint {
        t: u64,
        after_ms: u64,
    },
    Close {
        t: u64,
        code: u16,
    },
}

/// The line (newline included) of `viewer`'s `event`.
pub(crate) fn viewer_line(viewer: u32, event: &Event) -> String {
    let ids = |ids: &[CommentId]| ids.iter().map(|id| format!(" {id}")).collect::<String>();
    let opt = |id: &Option<CommentId>| id.map_or_else(|| "-".to_owned(), |id| id.to_string());
    match event {
        Event::Open { t, instance, after } => format!("{viewer} {t} o {instance} {}\n", opt(after)),
        Event::Failed { t, status } => format!("{viewer} {t} f {status}\n"),
        Event::Init {
            t,
            resumed,
            epoch,
            ids: list,
        } => format!(
            "{viewer} {t} i {} {} {}\n",
            u8::from(*resumed),
            if epoch.is_empty() { "-" } else { epoch },
            ids(list).trim_start()
        ),
        Event::Comments {
            t,
            skipped,
            ids: list,
        } => format!("{viewer} {t} c {skipped}{}\n", ids(list)),
        Event::Hint { t, after_ms } => format!("{viewer} {t} r {after_ms}\n"),
        Event::Close { t, code } => format!("{viewer} {t} x {code}\n"),
    }
}

/// Parses a viewer line; `None` for a line that is not one.
pub(crate) fn parse_viewer_line(line: &str) -> Option<(u32, Event)> {
    let mut f = line.split_ascii_whitespace();
    let viewer = f.next()?.parse().ok()?;
    let t = f.next()?.parse().ok()?;
    let kind = f.next()?;
    let ids = |f: std::str::SplitAsciiWhitespace<'_>| -> Option<Vec<CommentId>> {
        f.map(|s| s.parse().ok()).collect()
    };
    let event = match kind {
        "o" => Event::Open {
            t,
            instance: f.next()?.parse().ok()?,
            after: match f.next()? {
                "-" => None,
                id => Some(id.parse().ok()?),
            },
        },
        "f" => Event::Failed {
            t,
            status: f.next()?.parse().ok()?,
        },
        "i" => Event::Init {
            t,
            resumed: f.next()? == "1",
            epoch: f.next()?.trim_start_matches('-').to_owned(),
            ids: ids(f)?,
        },
        "c" => Event::Comments {
            t,
            skipped: f.next()?.parse().ok()?,
            ids: ids(f)?,
        },
        "r" => Event::Hint {
            t,
            after_ms: f.next()?.parse().ok()?,
        },
        "x" => Event::Close {
            t,
            code: f.next()?.parse().ok()?,
        },
        _ => return None,
    };
    Some((viewer, event))
}

/// Where a published comment's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A poster's `ack`.
    Ws,
    /// A service's `201` or `200`.
    Http,
    /// The stream's end marker (a system comment posted once the load stopped).
    End,
}

/// The published line (newline included) of a comment of stream `stream`.
pub(crate) fn published_line(stream: usize, id: CommentId, source: Source) -> String {
    let source = match source {
        Source::Ws => "ws",
        Source::Http => "http",
        Source::End => "end",
    };
    format!("{stream} {id} {source}\n")
}

/// Parses a published line.
pub(crate) fn parse_published_line(line: &str) -> Option<(usize, CommentId, Source)> {
    let mut f = line.split_ascii_whitespace();
    let stream = f.next()?.parse().ok()?;
    let id = f.next()?.parse().ok()?;
    let source = match f.next()? {
        "ws" => Source::Ws,
        "http" => Source::Http,
        "end" => Source::End,
        _ => return None,
    };
    Some((stream, id, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> CommentId {
        CommentId { ms, seq }
    }

    #[test]
    fn ids_order_as_ms_then_seq() {
        assert!(id(5, 10) < id(6, 0));
        assert!(id(5, 2) < id(5, 10));
        assert_eq!("1732240000000-3".parse(), Ok(id(1_732_240_000_000, 3)));
        assert!("17-".parse::<CommentId>().is_err());
        assert_eq!(id(7, 1).to_string(), "7-1");
    }

    #[test]
    fn every_event_reads_back_as_written() {
        let events = [
            Event::Open {
                t: 1,
                instance: 2,
                after: Some(id(5, 0)),
            },
            Event::Open {
                t: 1,
                instance: 0,
                after: None,
            },
            Event::Failed { t: 2, status: 503 },
            Event::Init {
                t: 3,
                resumed: true,
                epoch: "e1".into(),
                ids: vec![id(6, 0), id(6, 1)],
            },
            Event::Init {
                t: 3,
                resumed: false,
                epoch: String::new(),
                ids: Vec::new(),
            },
            Event::Comments {
                t: 4,
                skipped: 3,
                ids: vec![id(9, 0)],
            },
            Event::Hint {
                t: 5,
                after_ms: 250,
            },
            Event::Close { t: 6, code: 4002 },
        ];
        for event in events {
            let line = viewer_line(17, &event);
            assert!(line.ends_with('\n'));
            assert_eq!(parse_viewer_line(&line), Some((17, event)), "{line}");
        }
        assert_eq!(parse_viewer_line("1 2 z"), None);
        let line = published_line(3, id(8, 1), Source::Http);
        assert_eq!(
            parse_published_line(&line),
            Some((3, id(8, 1), Source::Http))
        );
    }
}
