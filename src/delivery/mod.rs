//! The delivery engine: from an event queued for a stream's room to the bytes on each of
//! its sockets.
//!
//! - [`room`]: one stream's [`Room`]: the queue the hub dispatches into and the task that
//!   takes it, merges runs of comments into frames, encodes each frame once and hands it to
//!   every [`Member`] in one pass (coalescing a hot room's passes).
//! - [`member`]: what a room hands its members ([`RoomEvent`]), the [`Member`] it hands
//!   them to, and what they did with it ([`Delivery`]).
//! - [`batch`]: a run of comments encoded once, and once more per thinning tier in use;
//!   [`thinning`]: the tiers and the samplers that choose what each tier keeps.
//! - [`viewer`]: one viewer's share of its stream, a state machine without I/O: from each
//!   event and the socket's queued bytes, what to write (a shared frame, and at most a
//!   tail of the socket's own) or why to end; held events, the last id sent, the tier
//!   ladder of a viewer behind, `skipped`.
//! - [`peer`]: a connection as its room sees it: the member that carries out its viewer's
//!   decisions under its lock, writing each frame to its socket there and then;
//!   [`outbox`]: the one way bytes reach a socket, and the bounded queue of what it would
//!   not take yet.
//! - [`policy`]: every number of the slow-viewer policy, with its reason, in one table.
//!
//! A comment's way, hop by hop: the hub hands the broker's event to the stream's room
//! ([`Room::dispatch`], which only queues and wakes the room's task); the task takes
//! everything queued, merges runs of comments into [`CommentBatch`]es, each encoded once,
//! and hands each event to every member ([`Member::deliver`]); a [`Peer`] takes its lock
//! and asks its [`Viewer`] ([`Viewer::on_event`], which takes the tier's choice from the
//! batch, [`CommentBatch::for_socket`]); the peer writes the [`Write`] it answers through
//! the socket's outbox, one non-blocking `writev` of header, shared bytes and this
//! socket's tail. What the socket does not take waits in the outbox for the connection's
//! own task (`ws::connection`, through [`Peer::poll_attention`]) to write as the socket
//! drains.
//!
//! It imports only `domain`, `metrics` and `background` (where its room tasks run, tracked)
//! of the crate (and std, tokio, bytes, slab, rand,
//! tracing and tungstenite's frame header); `scripts/check-modules` fails if it imports
//! `hub`, `ws`, `broker`, `http` or `app`: the registry, the protocols, the cluster and the
//! wiring sit above it and drive it.

mod batch;
mod member;
mod outbox;
mod peer;
pub mod policy;
mod room;
mod thinning;
mod viewer;

#[cfg(test)]
pub(crate) mod testing;

pub use batch::{CommentBatch, Sent};
pub use member::{Delivery, Member, RoomEvent};
pub use outbox::RawSocket;
pub use peer::{Attention, Deflate, Peer, Signal};
pub use room::{Queued, Room};
pub use thinning::{Samplers, Tier};
pub use viewer::{Action, Step, Viewer, Why, Write};
