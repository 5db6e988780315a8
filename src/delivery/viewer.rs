//! One viewer's share of its stream, as a state machine that does no I/O: given each event
//! of the room and the bytes waiting in the socket's queue, it answers what to write to
//! the socket, or why the connection must end. The socket side ([`super::peer`]) carries
//! that out under its lock and feeds back how the write left the queue
//! ([`Viewer::queued`]). Its only clock is tokio's, so its tests run it under paused time.
//!
//! **Until `init`.** Until the connection's `init` is written the viewer holds the room's
//! events (at most [`MAX_HELD`]); then ([`Viewer::start`]) it hands back those to send,
//! and sends nothing `init` covered, nor anything older than what it sent since.
//!
//! **Thinning and the priority lane.** A viewer is sent the user comments of its tier (its
//! budget, see [`super::thinning`]); what it is not sent is counted and told in the
//! `skipped` of its next `comments` frame. A viewer whose socket falls behind moves down to
//! thinner tiers as the socket's queue grows ([`SLOWER`]), down to the priority lane
//! (system, moderator and its own comments only), and back up a step per
//! [`STEP_UP_AFTER`] once the queue is empty. Only a socket that falls
//! [`MAX_QUEUED_BYTES`](super::policy::MAX_QUEUED_BYTES) behind even so is cut off, by
//! the outbox's bound.
//!
//! **What it writes.** A frame shared by every socket that is sent the same
//! ([`Write::frame`]), with at most this socket's own tail (`"skipped":n`). A variant of a
//! frame for some viewers only (a comment only its author and moderators see) is chosen
//! where frames are made, in [`super::CommentBatch::for_socket`]; a compressed form of a
//! frame would be made once per frame and picked by the outbox for a socket that
//! negotiated it. Neither changes this machine.

use tokio::time::Instant;

use super::member::{Delivery, RoomEvent};
use super::policy::{MAX_HELD, SLOWER, STEP_UP_AFTER};
use super::thinning::Tier;
use crate::domain::wire::SharedFrame;
use crate::domain::{Audience, CommentId, UserId};

/// One viewer's delivery state.
#[derive(Debug)]
pub struct Viewer {
    /// The connection's user, if it has one (a ban names a user; its own comments are
    /// never thinned, its own shadowed ones it sees).
    user: Option<UserId>,
    /// A moderator of the stream: sees shadowed comments (marked) and `held` frames.
    moderator: bool,
    /// The viewer's budget of user comments.
    budget: Tier,
    /// `init` is written: events go straight out.
    started: bool,
    held: Vec<RoomEvent>,
    /// The newest comment id this viewer has been sent or told of; older ones are never
    /// sent again.
    last_id: Option<CommentId>,
    /// Comments not sent since the last `comments` frame: the next one's `skipped`.
    skipped: u64,
    /// Steps down [`SLOWER`] the viewer is held, and when it last changed.
    slower: usize,
    slower_since: Option<Instant>,
}

/// What to do with one event, and what it counts as.
#[derive(Debug, PartialEq)]
pub struct Step {
    /// The comments handed to the socket, and those left out, by why.
    pub delivery: Delivery,
    pub action: Action,
}

/// What the socket side is to do.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Nothing to write: the event is held until `init` is written, was sent already, is
    /// left out whole (told in a later `skipped`), or is another user's ban.
    Nothing,
    Write(Write),
    /// The connection must end.
    End(Why),
}

/// One frame for the socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The encoded frame, as shared with every socket that is sent the same.
    pub frame: SharedFrame,
    /// The comments in it (what a socket cut off before it takes the frame loses).
    pub comments: u64,
    /// This socket's own tail: `"skipped":n` added to a `comments` frame (0: none).
    pub skipped: u64,
}

/// Why the room's side ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The connection's user was banned from the stream.
    Banned,
    /// The stream lost comments the broker could not backfill.
    Resync,
    /// More events came while `init` was written than a viewer holds: the `dropped` it
    /// held are lost.
    SlowConsumer { dropped: u64 },
}

impl Step {
    fn nothing() -> Self {
        Self::action(Action::Nothing)
    }

    fn action(action: Action) -> Self {
        Self {
            delivery: Delivery::default(),
            action,
        }
    }
}

impl Viewer {
    pub fn set_moderator(&mut self, moderator: bool) {
        self.moderator = moderator;
    }

    pub fn new(user: Option<UserId>, moderator: bool, budget: Tier) -> Self {
        Self {
            user,
            moderator,
            budget,
            started: false,
            held: Vec::new(),
            last_id: None,
            skipped: 0,
            slower: 0,
            slower_since: None,
        }
    }

    /// `init` is written and covered comments up to `last_id`: the events held meanwhile,
    /// to be fed back through [`Viewer::on_event`] in order (it sends what `init` did not
    /// cover). From here on events go straight out.
    pub fn start(&mut self, last_id: Option<CommentId>) -> Vec<RoomEvent> {
        self.last_id = last_id;
        self.started = true;
        std::mem::take(&mut self.held)
    }

    /// What to do with the room's next event, given the bytes waiting in the socket's
    /// queue (0: it is empty).
    pub fn on_event(&mut self, event: &RoomEvent, queued: usize) -> Step {
        if !self.started {
            return self.hold(event);
        }
        match event {
            RoomEvent::Comments(batch) => {
                let tier = self.tier(queued);
                let audience = Audience {
                    user: self.user.as_ref(),
                    moderator: self.moderator,
                };
                let Some(sent) = batch.for_socket(tier, audience, &mut self.last_id) else {
                    return Step::nothing();
                };
                self.skipped += sent.skipped;
                let mut delivery = Delivery::sent(sent.comments);
                if self.slower > 0 {
                    delivery.behind = sent.skipped;
                } else {
                    delivery.over_budget = sent.skipped;
                }
                let action = match sent.frame {
                    Some(frame) => Action::Write(Write {
                        frame,
                        comments: sent.comments,
                        skipped: std::mem::take(&mut self.skipped),
                    }),
                    None => Action::Nothing,
                };
                Step { delivery, action }
            }
            RoomEvent::Frame(frame) => Self::frame(frame),
            RoomEvent::ToModerators(frame) if self.moderator => Self::frame(frame),
            RoomEvent::ToUser(user, frame) if self.user.as_ref() == Some(user) => {
                Self::frame(frame)
            }
            RoomEvent::ToModerators(_) | RoomEvent::ToUser(..) => Step::nothing(),
            RoomEvent::Banned(user) if self.user.as_ref() == Some(user) => {
                Step::action(Action::End(Why::Banned))
            }
            RoomEvent::Banned(_) => Step::nothing(),
            RoomEvent::Resync => Step::action(Action::End(Why::Resync)),
        }
    }

    /// A frame without comments, written as it is.
    fn frame(frame: &SharedFrame) -> Step {
        Step::action(Action::Write(Write {
            frame: frame.clone(),
            comments: 0,
            skipped: 0,
        }))
    }

    /// A write left `queued` bytes waiting in the socket's queue: the viewer steps down
    /// [`SLOWER`] as far as they reach.
    pub fn queued(&mut self, queued: usize) {
        let steps = SLOWER
            .iter()
            .take_while(|(from, _)| queued >= *from)
            .count();
        if steps > self.slower {
            self.slower = steps;
            self.slower_since = Some(Instant::now());
        }
    }

    /// Steps down [`SLOWER`] the viewer is held now (0: at its own budget).
    pub fn slower(&self) -> usize {
        self.slower
    }

    /// The newest comment id this viewer has been sent or told of.
    pub fn last_id(&self) -> Option<CommentId> {
        self.last_id
    }

    /// Holds an event until `init` is written; one too many ends the connection.
    fn hold(&mut self, event: &RoomEvent) -> Step {
        if self.held.len() < MAX_HELD {
            self.held.push(event.clone());
            return Step::nothing();
        }
        let dropped = self.held.len() as u64;
        Step::action(Action::End(Why::SlowConsumer { dropped }))
    }

    /// The tier this viewer is sent now: its budget, or less while its socket is behind. A
    /// viewer whose socket's queue is empty steps back up, one step per [`STEP_UP_AFTER`]
    /// at most.
    fn tier(&mut self, queued: usize) -> Tier {
        if self.slower > 0
            && queued == 0
            && self
                .slower_since
                .is_none_or(|since| since.elapsed() >= STEP_UP_AFTER)
        {
            self.slower -= 1;
            self.slower_since = Some(Instant::now());
        }
        match self.slower {
            0 => self.budget,
            n => self.budget.min(Tier::at_most(SLOWER[n - 1].1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::delivery::Samplers;
    use crate::delivery::testing::chat;
    use crate::domain::CommentKind;

    /// Comments with these ids (as ms) of `kind` by user `chat`, thinned by `samplers`.
    fn batch(ids: std::ops::Range<u64>, kind: CommentKind, samplers: &Arc<Samplers>) -> RoomEvent {
        chat(ids, kind, "c", samplers)
    }

    fn write(step: Step) -> Write {
        match step.action {
            Action::Write(write) => write,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    /// Events before `init` are held and handed back at the start; what `init` covered and
    /// what was sent already is not sent again.
    #[test]
    fn events_before_init_are_held_then_sent_once() {
        let samplers = Arc::new(Samplers::default());
        let mut viewer = Viewer::new(None, false, Tier::UNLIMITED);
        let first = batch(1..3, CommentKind::Gift, &samplers);
        assert_eq!(viewer.on_event(&first, 0), Step::nothing(), "held");
        let held = viewer.start(Some(CommentId::new(1, 0)));
        assert_eq!(held.len(), 1);
        let step = viewer.on_event(&held[0], 0);
        assert_eq!(step.delivery, Delivery::sent(1), "not the one init carried");
        let sent = write(step);
        assert!(
            sent.frame.as_str().contains(r#""2-0""#) && !sent.frame.as_str().contains(r#""1-0""#)
        );
        assert_eq!(viewer.on_event(&first, 0), Step::nothing(), "sent already");
        assert_eq!(viewer.last_id(), Some(CommentId::new(2, 0)));
    }

    /// A viewer holds at most MAX_HELD events; one more ends it, counting those held.
    #[test]
    fn too_many_events_before_init_end_the_viewer() {
        let mut viewer = Viewer::new(None, false, Tier::UNLIMITED);
        let frame = RoomEvent::Frame(SharedFrame::from("f".to_owned()));
        for _ in 0..MAX_HELD {
            assert_eq!(viewer.on_event(&frame, 0), Step::nothing());
        }
        let dropped = MAX_HELD as u64;
        let end = Step::action(Action::End(Why::SlowConsumer { dropped }));
        assert_eq!(viewer.on_event(&frame, 0), end);
    }

    /// A ban ends the banned user's viewer only; a resync ends every viewer; other frames
    /// go out as they are.
    #[test]
    fn bans_resyncs_and_frames() {
        let user = UserId::parse("u").unwrap();
        let mut viewer = Viewer::new(Some(user.clone()), false, Tier::UNLIMITED);
        viewer.start(None);
        let other = RoomEvent::Banned(UserId::parse("other").unwrap());
        assert_eq!(viewer.on_event(&other, 0), Step::nothing());
        let banned = Step::action(Action::End(Why::Banned));
        assert_eq!(viewer.on_event(&RoomEvent::Banned(user), 0), banned);
        let resync = Step::action(Action::End(Why::Resync));
        assert_eq!(viewer.on_event(&RoomEvent::Resync, 0), resync);
        let frame = SharedFrame::from("f".to_owned());
        let sent = write(viewer.on_event(&RoomEvent::Frame(frame.clone()), 0));
        assert_eq!((sent.frame, sent.comments, sent.skipped), (frame, 0, 0));
    }

    /// What a viewer's budget leaves out is told in the `skipped` of its next frame, which
    /// is otherwise the batch's shared frame.
    #[test]
    fn what_is_left_out_is_told_with_the_next_frame() {
        let samplers = Arc::new(Samplers::default());
        let mut viewer = Viewer::new(None, false, Tier::PRIORITY);
        viewer.start(None);
        let chat = viewer.on_event(&batch(1..4, CommentKind::User, &samplers), 0);
        let over_budget = Delivery {
            over_budget: 3,
            ..Delivery::default()
        };
        let left_out = Step {
            delivery: over_budget,
            action: Action::Nothing,
        };
        assert_eq!(chat, left_out);
        let gift = batch(4..5, CommentKind::Gift, &samplers);
        let sent = write(viewer.on_event(&gift, 0));
        assert_eq!((sent.comments, sent.skipped), (1, 3));
        let RoomEvent::Comments(shared) = gift else {
            unreachable!()
        };
        let shared = shared.frame.as_ref().unwrap();
        let (ours, theirs) = (sent.frame.as_bytes(), shared.as_bytes());
        assert_eq!(ours.as_ptr(), theirs.as_ptr(), "the shared bytes");
        let next = write(viewer.on_event(&batch(5..6, CommentKind::Gift, &samplers), 0));
        assert_eq!(next.skipped, 0, "told once");
    }

    /// A viewer whose socket's queue grows steps down the ladder as far as the queue
    /// reaches, and back up one step per STEP_UP_AFTER of an empty queue.
    #[tokio::test(start_paused = true)]
    async fn a_viewer_behind_steps_down_the_ladder_and_back_up() {
        let samplers = Arc::new(Samplers::default());
        let mut viewer = Viewer::new(None, false, Tier::UNLIMITED);
        viewer.start(None);
        let mut next = 0;
        let mut chat = |n: u64| {
            next += n;
            batch(next - n..next, CommentKind::User, &samplers)
        };
        viewer.queued(SLOWER[0].0 - 1);
        assert_eq!(viewer.slower(), 0, "below the first step");
        viewer.queued(SLOWER[0].0);
        assert_eq!(viewer.slower(), 1);
        let step = viewer.on_event(&chat(20), SLOWER[0].0);
        assert_eq!(
            (step.delivery.sent, step.delivery.behind),
            (10, 10),
            "10 a second"
        );
        viewer.queued(SLOWER[2].0);
        assert_eq!(viewer.slower(), SLOWER.len(), "in the priority lane");
        viewer.queued(SLOWER[0].0);
        assert_eq!(
            viewer.slower(),
            SLOWER.len(),
            "a shorter queue is no step up"
        );
        let step = viewer.on_event(&chat(5), 0);
        assert_eq!((step.delivery.behind, step.action), (5, Action::Nothing));

        // An empty queue steps up once STEP_UP_AFTER has passed since the last step.
        tokio::time::advance(STEP_UP_AFTER - Duration::from_millis(1)).await;
        viewer.on_event(&chat(1), 0);
        assert_eq!(viewer.slower(), SLOWER.len(), "not yet");
        tokio::time::advance(Duration::from_millis(1)).await;
        viewer.on_event(&chat(1), SLOWER[0].0);
        assert_eq!(viewer.slower(), SLOWER.len(), "not while bytes wait");
        let step = viewer.on_event(&chat(10), 0);
        assert_eq!(viewer.slower(), SLOWER.len() - 1, "one step up");
        assert_eq!(
            (step.delivery.sent, step.delivery.behind),
            (2, 8),
            "2 a second"
        );
        let sent = write(step);
        assert_eq!(
            sent.skipped,
            5 + 1 + 1 + 8,
            "every comment left out since the last frame"
        );
        viewer.on_event(&chat(1), 0);
        assert_eq!(
            viewer.slower(),
            SLOWER.len() - 1,
            "one step per STEP_UP_AFTER"
        );
    }
}
