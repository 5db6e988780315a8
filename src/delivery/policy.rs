//! The slow-viewer policy: every number that decides how delivery treats a stream it cannot
//! keep up with and a viewer that cannot keep up with its stream, each with its reason.
//! `docs/behaviour.md` ("Delivery", "Thinning") tells operators and client authors the
//! same numbers; change both together.
//!
//! A viewer whose link is slower than its stream meets them in this order:
//!
//! 1. The kernel takes up to [`SEND_BUFFER`] of its frames.
//! 2. What the kernel does not take waits in the socket's own queue; as the queue grows the
//!    viewer is held to thinner tiers ([`SLOWER`]), down to the priority lane, and steps
//!    back up one step per [`STEP_UP_AFTER`] once the queue is empty.
//! 3. A queue past [`MAX_QUEUED_BYTES`] even so, or one the socket takes nothing of for
//!    [`MAX_WRITE_TIMEOUT`], closes the connection with 4001 (slow consumer); so does a
//!    connection that gets more than [`MAX_HELD`] events while its `init` is written.
//!
//! A stream whose room cannot keep up first coalesces ([`HOT_DELIVERIES_PER_SEC`],
//! [`STRETCH`], [`MAX_WINDOW`]; the window itself is `DANMAKU_COALESCE_MS`), and past
//! [`MAX_QUEUED_EVENTS`] closes its sockets with 4002 (resync). A viewer's budget
//! (`DANMAKU_VIEWER_MAX_RATE`, `max_rate=`) is rounded down to a rung of [`LADDER`].

use std::time::Duration;

// A room: one stream's frames and passes.

/// Most comments in one `comments` frame (at most ~3 KiB each: ~300 KiB a frame): a burst
/// leaves as several frames, not one of unbounded size.
pub const MAX_FRAME_COMMENTS: usize = 100;

/// Events queued for a room's task before it counts as fallen behind: the room then drops
/// its backlog, counts it (`dropped{reason="room_lag"}`) and closes its sockets with 4002,
/// so every client resumes from history rather than the instance queueing without bound.
pub const MAX_QUEUED_EVENTS: usize = 4096;

/// Deliveries per second (local viewers × comments per second) from which a room coalesces:
/// about three quarters of a core of sends (a loopback send costs ~5 µs), where frames, not
/// comments, become what a box runs out of.
pub const HOT_DELIVERIES_PER_SEC: f64 = 150_000.0;

/// A hot room whose pass took long waits this many times the pass before the next one (up
/// to [`MAX_WINDOW`]), if that is longer than its window: when the box runs short of CPU
/// its passes slow down, and fewer, fuller frames are what it can still send.
pub const STRETCH: u32 = 2;

/// The longest a hot room waits between passes, however long its passes take (the window
/// itself, `DANMAKU_COALESCE_MS`, is at most as long).
pub const MAX_WINDOW: Duration = Duration::from_millis(100);

/// Members handed an event between two yields of the room's task, so that a pass over a
/// large room does not hold a runtime worker for long.
pub const YIELD_EVERY: usize = 512;

/// Fewest members per share when a pass is split over the runtime's workers: below this
/// a share's sends cost less than handing it to another worker.
pub const MIN_SHARE: usize = 256;

// Thinning: how many user comments a second a viewer is sent.

/// The rates (user comments a second) a viewer's budget is rounded down to: every rate up
/// to 10, then about a quarter apart, up to 1,000 a second (more than anyone reads). Few
/// rungs, so that the viewers of a stream share a few tiers and each tier's frame is chosen
/// and encoded once per batch, not per socket.
pub const LADDER: [u16; 30] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250,
    300, 400, 500, 600, 800, 1000,
];

/// The credit a tier keeps, and starts with, as time at its rate (at least one comment): a
/// viewer under its budget gets a short burst whole, and a room whose passes come up to this
/// far apart (a box under load) still sends each tier its full rate.
pub const MAX_CREDIT: Duration = Duration::from_secs(1);

// A viewer: one socket's share of its stream.

/// Events held for a connection whose `init` is still being written (they go out after it,
/// less what it carried); one more and the connection is a slow consumer (4001).
pub const MAX_HELD: usize = 1024;

/// A socket that falls behind: from how many queued bytes it is held to which tier at most
/// (user comments a second): 10 from 16 KiB, 2 from 64 KiB, the priority lane (system,
/// moderator and its own comments only) from 128 KiB. Below the first step it keeps its own
/// budget. A viewer behind is sent less before it is cut off, so gifts reach a phone that
/// chat would have drowned.
pub const SLOWER: [(usize, u32); 3] = [(16 * 1024, 10), (64 * 1024, 2), (128 * 1024, 0)];

/// How long a socket's queue must stay empty between two steps back up [`SLOWER`]: one
/// drained moment is not a recovered link.
pub const STEP_UP_AFTER: Duration = Duration::from_secs(1);

// The socket: bytes the viewer has not taken yet.

/// The kernel's send buffer of a WebSocket's socket (the kernel doubles it for its own
/// bookkeeping). Left to itself the kernel grows a loopback or long-haul socket's buffer to
/// megabytes, seconds of a busy stream that a viewer behind would get late and the server
/// would not see it fall behind; this much holds a second of the busiest stream a viewer
/// is sent at a budget, and past it the socket's own queue thins ([`SLOWER`]) and bounds
/// ([`MAX_QUEUED_BYTES`]) it.
pub const SEND_BUFFER: usize = 64 * 1024;

/// Most bytes queued for one socket before it counts as a slow consumer: about a thousand
/// comments of 200 characters, or a dozen full `init` frames. Past it the frames not yet
/// begun are dropped (`dropped{reason="slow_consumer"}`) and the socket closes with 4001.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;

/// Most frames handed to one `writev` when a socket's queue drains: each is at most three
/// slices (header, shared bytes, this socket's tail), so one call stays far below the
/// kernel's limit of 1,024.
pub const MAX_SLICES: usize = 32;

/// Bytes the socket takes none of within this long (or within the idle timeout, if
/// shorter: such a socket is as good as silent) mark a slow consumer (4001,
/// `dropped{reason="write_timeout"}`). A socket that takes them, however slowly, is not
/// stalled.
pub const MAX_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
