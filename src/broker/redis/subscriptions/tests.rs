//! The owner's state machine alone, under paused time: effects are checked as recorded
//! and results fed back by hand, as the subscriber task would.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::oneshot;

use super::probes::{PROBE_QUIET, PROBE_QUIET_MAX, PROBE_TIMEOUT};
use super::*;
use crate::broker::BrokerEvent;
use crate::domain::{Comment, CommentKind, Epoch};
use crate::metrics::Latencies;

const LINGER: Duration = Duration::from_secs(2);

struct Harness {
    subs: Subscriptions,
    events: Arc<Mutex<Vec<BrokerEvent>>>,
    metrics: Arc<Metrics>,
}

fn harness() -> Harness {
    harness_keeping(KeptTerms::default())
}

/// A harness whose broker keeps blocked terms in `kept`.
fn harness_keeping(kept: KeptTerms) -> Harness {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let sink: EventSink = Arc::new(move |e| seen.lock().unwrap().push(e));
    let metrics = Arc::new(Metrics::new(Latencies::noop()));
    Harness {
        subs: Subscriptions::new(sink, metrics.clone(), LINGER, kept, Reports::default()),
        events,
        metrics,
    }
}

fn epoch(name: &str) -> Epoch {
    Epoch::parse(name).unwrap()
}

fn s() -> StreamId {
    StreamId::parse("s").unwrap()
}

fn comment(ms: u64) -> Comment {
    Comment {
        id: CommentId::new(ms, 0),
        stream_id: s(),
        kind: CommentKind::System,
        user: None,
        text: format!("c{ms}"),
        data: None,
        ts: ms,
        media_ts: None,
        by_moderator: false,
        shadow: false,
    }
}

type Answer = oneshot::Receiver<Result<(), BrokerError>>;

impl Harness {
    fn acquire(&mut self) -> Answer {
        let (waiter, answer) = oneshot::channel();
        self.subs.acquire(s(), waiter, Some("node-1".into()));
        answer
    }

    fn effects(&mut self) -> Vec<Effect> {
        self.subs.take_effects().collect()
    }

    /// The one repair job recorded since the last look.
    fn repair_job(&mut self) -> RepairJob {
        match self.effects().as_slice() {
            [Effect::Repair { stream, job }] if *stream == s() => job.clone(),
            other => panic!("expected one repair, got {other:?}"),
        }
    }

    fn expired_lingers(&mut self) -> Vec<StreamId> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut expired = Vec::new();
        while let Poll::Ready(stream) = self.subs.poll_linger(&mut cx) {
            expired.push(stream);
        }
        expired
    }

    /// Runs the lingers that ended: what the subscriber task does when they fire.
    fn fire_lingers(&mut self) -> usize {
        let expired = self.expired_lingers();
        let n = expired.len();
        for stream in expired {
            self.subs.linger_over(stream);
        }
        n
    }

    /// Acquires and completes the first subscription (history empty).
    fn live(&mut self) -> Answer {
        let mut answer = self.acquire();
        let job = self.repair_job();
        assert_eq!(job.repair, Repair::Subscribe);
        self.subs
            .repaired(s(), job.generation, Ok(Repaired::default()));
        assert!(matches!(answer.try_recv(), Ok(Ok(()))));
        answer
    }

    /// What reached the sockets: comments by text, other events by name (the cache
    /// invalidations of [`BrokerEvent::Interrupted`] are not for sockets, and left out).
    fn delivered_texts(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .flat_map(|e| match e {
                BrokerEvent::Comments { comments, .. } => {
                    comments.iter().map(|c| c.text.clone()).collect()
                }
                BrokerEvent::Interrupted { .. } => vec![],
                other => vec![format!("{other:?}")],
            })
            .collect()
    }

    /// How many times the hub was told the stream's delivery was interrupted.
    fn interruptions(&self) -> usize {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| matches!(e, BrokerEvent::Interrupted { .. }))
            .count()
    }
}

fn repaired_with(backfill: Vec<Comment>) -> Result<Repaired, BrokerError> {
    Ok(Repaired {
        backfill,
        ..Repaired::default()
    })
}

#[tokio::test(start_paused = true)]
async fn acquire_release_linger_then_reacquire() {
    let mut h = harness();
    let mut answer = h.acquire();
    let job = h.repair_job();
    assert_eq!(job.repair, Repair::Subscribe);
    assert!(answer.try_recv().is_err(), "not answered before it is live");
    h.subs
        .repaired(s(), job.generation, Ok(Repaired::default()));
    assert!(matches!(answer.try_recv(), Ok(Ok(()))));
    assert_eq!(h.metrics.streams_subscribed(), 1);

    h.subs.release(&s());
    assert_eq!(h.fire_lingers(), 0);
    tokio::time::advance(LINGER - Duration::from_millis(20)).await;
    assert_eq!(h.fire_lingers(), 0, "still lingering");
    assert!(h.effects().is_empty());
    tokio::time::advance(Duration::from_millis(40)).await;
    assert_eq!(h.fire_lingers(), 1);
    assert!(matches!(h.effects().as_slice(), [Effect::Unsubscribe(stream)] if *stream == s()));
    assert_eq!(h.metrics.streams_subscribed(), 0);
    h.subs.unsubscribed(s());
    assert_eq!(h.subs.stream_count(), 0, "forgotten once unsubscribed");

    // Back again: a fresh first subscription.
    let _answer = h.live();
    assert_eq!(h.metrics.streams_subscribed(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_acquire_during_the_linger_keeps_the_subscription() {
    let mut h = harness();
    let _first = h.live();
    h.subs.release(&s());
    let _ = h.expired_lingers();
    tokio::time::advance(LINGER / 2).await;
    let mut again = h.acquire();
    assert!(
        matches!(again.try_recv(), Ok(Ok(()))),
        "a live stream answers at once"
    );
    tokio::time::advance(LINGER * 2).await;
    assert_eq!(h.fire_lingers(), 0, "the linger was called off");
    assert!(h.effects().is_empty());
    assert_eq!(h.metrics.streams_subscribed(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_acquire_during_the_unsubscribe_waits_and_subscribes_afresh() {
    let mut h = harness();
    let _first = h.live();
    h.subs.on_message(&s(), Some(Inbound::Comment(comment(5))));
    h.subs.release(&s());
    let _ = h.expired_lingers();
    tokio::time::advance(LINGER * 2).await;
    assert_eq!(h.fire_lingers(), 1);
    assert!(matches!(h.effects().as_slice(), [Effect::Unsubscribe(_)]));
    let mut waiting = h.acquire();
    assert!(waiting.try_recv().is_err(), "waits for the unsubscribe");
    h.subs.unsubscribed(s());
    let job = h.repair_job();
    assert_eq!(job.repair, Repair::Subscribe);
    assert_eq!(
        job.last, None,
        "a fresh subscription starts from the history's tail"
    );
    h.subs
        .repaired(s(), job.generation, Ok(Repaired::default()));
    assert!(matches!(waiting.try_recv(), Ok(Ok(()))));
    assert_eq!(h.metrics.streams_subscribed(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_repair_superseded_by_a_newer_one_delivers_nothing() {
    let mut h = harness();
    let _held = h.live();
    h.subs.on_message(&s(), Some(Inbound::Comment(comment(1))));

    // The subscriber client reconnects: a resubscribe and backfill from comment 1.
    h.subs.on_reconnect();
    let older = h.repair_job();
    assert_eq!(older.repair, Repair::Resubscribe);
    assert_eq!(older.last, Some(CommentId::new(1, 0)));
    // Comments 3 and 4 arrive while it runs; they wait.
    h.subs.on_message(&s(), Some(Inbound::Comment(comment(3))));
    h.subs.on_message(&s(), Some(Inbound::Comment(comment(4))));
    // Then the stream's slot moves: a newer repair supersedes the first.
    h.subs.on_topology(|_| "node-2".into());
    let newer = h.repair_job();
    assert!(newer.generation > older.generation);

    h.subs
        .repaired(s(), older.generation, repaired_with(vec![comment(2)]));
    assert_eq!(
        h.delivered_texts(),
        ["c1"],
        "the superseded result is ignored"
    );

    h.subs.repaired(
        s(),
        newer.generation,
        repaired_with(vec![comment(2), comment(3)]),
    );
    assert_eq!(
        h.delivered_texts(),
        ["c1", "c2", "c3", "c4"],
        "backfill first, then what waited, each comment once"
    );
    assert!(h.effects().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_release_during_a_repair_unsubscribes_after_the_linger() {
    let mut h = harness();
    let _held = h.live();
    h.subs.on_reconnect();
    let job = h.repair_job();
    h.subs.on_message(&s(), Some(Inbound::Comment(comment(7))));
    h.subs.release(&s());
    let _ = h.expired_lingers();
    tokio::time::advance(LINGER * 2).await;
    assert_eq!(h.fire_lingers(), 1);
    assert!(
        matches!(h.effects().as_slice(), [Effect::Unsubscribe(_)]),
        "the unsubscribe aborts the repair job"
    );
    // The repair's result arrives after all: nobody holds the stream, nothing is delivered.
    h.subs
        .repaired(s(), job.generation, repaired_with(vec![comment(6)]));
    assert!(h.delivered_texts().is_empty());
    assert!(h.effects().is_empty());
    h.subs.unsubscribed(s());
    assert_eq!(h.subs.stream_count(), 0);
    assert_eq!(h.metrics.streams_subscribed(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_subscription_is_retried_while_someone_waits() {
    let mut h = harness();
    let mut answer = h.acquire();
    let job = h.repair_job();
    h.subs.repaired(
        s(),
        job.generation,
        Err(crate::broker::Unavailable::new("down").into()),
    );
    let retry = h.repair_job();
    assert_eq!(retry.repair, Repair::Subscribe);
    assert!(retry.after > Duration::ZERO, "after a backoff");
    assert!(answer.try_recv().is_err(), "the acquirer still waits");
    h.subs
        .repaired(s(), retry.generation, Ok(Repaired::default()));
    assert!(matches!(answer.try_recv(), Ok(Ok(()))));
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_subscription_nobody_waits_for_is_cleaned_up() {
    let mut h = harness();
    let answer = h.acquire();
    let job = h.repair_job();
    drop(answer);
    h.subs.release(&s());
    h.subs.repaired(
        s(),
        job.generation,
        Err(crate::broker::Unavailable::new("down").into()),
    );
    assert!(matches!(h.effects().as_slice(), [Effect::Unsubscribe(_)]));
    h.subs.unsubscribed(s());
    assert_eq!(h.subs.stream_count(), 0);
    assert_eq!(h.metrics.streams_subscribed(), 0, "never counted");
}

#[tokio::test(start_paused = true)]
async fn a_gap_older_than_history_tells_viewers_to_resync() {
    let mut h = harness();
    let _held = h.live();
    h.subs.lagged(3);
    let job = h.repair_job();
    assert_eq!(job.repair, Repair::Backfill);
    h.subs.repaired(
        s(),
        job.generation,
        Ok(Repaired {
            backfill: vec![comment(9)],
            complete: false,
            ..Repaired::default()
        }),
    );
    assert_eq!(
        h.delivered_texts(),
        ["Resync { stream: StreamId(s) }", "c9"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_quiet_stream_is_probed_and_rebuilt_when_the_probe_is_lost() {
    let mut h = harness();
    let _held = h.live();
    h.subs.on_tick();
    assert!(h.effects().is_empty(), "not quiet yet");
    tokio::time::advance(PROBE_QUIET + Duration::from_millis(1)).await;
    h.subs.on_tick();
    assert!(matches!(h.effects().as_slice(), [Effect::Probe(_)]));
    h.subs.probe_sent(&s());
    tokio::time::advance(PROBE_TIMEOUT + Duration::from_millis(1)).await;
    h.subs.on_tick();
    let job = h.repair_job();
    assert_eq!(job.repair, Repair::Resubscribe);
    assert_eq!(h.metrics.subscriptions_rebuilt(), 1);
}

/// How long after the last message the next probe goes out, ticking every 500 ms as the
/// subscriber task does.
async fn next_probe_after(h: &mut Harness) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        tokio::time::advance(Duration::from_millis(500)).await;
        h.subs.on_tick();
        if let [Effect::Probe(_)] = h.effects().as_slice() {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no probe");
    }
}

/// A stream that hears only probes is probed less and less often, never less than every
/// PROBE_QUIET_MAX; a comment brings it back to PROBE_QUIET.
#[tokio::test(start_paused = true)]
async fn a_stream_hearing_only_probes_is_probed_less_often() {
    let mut h = harness();
    let _held = h.live();
    let mut gaps = Vec::new();
    for _ in 0..7 {
        gaps.push(next_probe_after(&mut h).await);
        h.subs.probe_sent(&s());
        h.subs.on_message(&s(), None); // the probe came back
    }
    let secs: Vec<u64> = gaps
        .iter()
        .map(|g| g.as_millis().div_ceil(1000) as u64)
        .collect();
    assert_eq!(secs, [4, 7, 13, 25, 31, 31, 31], "{gaps:?}");
    assert!(
        gaps.iter()
            .all(|g| *g <= PROBE_QUIET_MAX + Duration::from_secs(1))
    );
    h.subs.on_message(&s(), Some(Inbound::Comment(comment(1))));
    let after_comment = next_probe_after(&mut h).await;
    assert!(
        after_comment <= PROBE_QUIET + Duration::from_secs(1),
        "{after_comment:?}"
    );
    assert_eq!(h.metrics.subscriptions_rebuilt(), 0);
}

/// A repair that finds the stream in another epoch (its history was lost) tells the local
/// viewers to resynchronise; the same epoch again does not.
#[tokio::test(start_paused = true)]
async fn a_new_epoch_tells_viewers_to_resync() {
    let mut h = harness();
    let mut answer = h.acquire();
    let job = h.repair_job();
    let first = Repaired {
        epoch: Some(epoch("a")),
        ..Repaired::default()
    };
    h.subs.repaired(s(), job.generation, Ok(first));
    assert!(matches!(answer.try_recv(), Ok(Ok(()))));
    let repair = |h: &mut Harness, name: &str| {
        h.subs.lagged(1);
        let job = h.repair_job();
        let again = Repaired {
            epoch: Some(self::epoch(name)),
            ..Repaired::default()
        };
        h.subs.repaired(s(), job.generation, Ok(again));
    };
    repair(&mut h, "a");
    assert!(h.delivered_texts().is_empty(), "same epoch: nothing lost");
    repair(&mut h, "b");
    assert_eq!(h.delivered_texts(), ["Resync { stream: StreamId(s) }"]);
    assert_eq!(
        h.metrics
            .dropped_by_reason()
            .find(|(r, _)| *r == "history_gap")
            .unwrap()
            .1,
        1
    );
}

/// A repair checks that the history still holds the last comment delivered (the epoch it
/// passes) only while that comment belongs to the current epoch: after the epoch changed, an
/// id of the old history would look lost in the new one, and every repair would replace the
/// epoch again. A published new epoch resyncs once; the instance's own does not.
#[tokio::test(start_paused = true)]
async fn only_an_id_of_the_current_epoch_is_checked_against_the_history() {
    let mut h = harness();
    let mut answer = h.acquire();
    let job = h.repair_job();
    let first = Repaired {
        epoch: Some(epoch("a")),
        ..Repaired::default()
    };
    h.subs.repaired(s(), job.generation, Ok(first));
    assert!(matches!(answer.try_recv(), Ok(Ok(()))));
    h.subs.on_message(&s(), Some(Inbound::Comment(comment(5))));
    h.subs.lagged(1);
    let job = h.repair_job();
    assert_eq!(
        job.epoch.as_ref().map(Epoch::as_str),
        Some("a"),
        "a comment of epoch a: checked"
    );

    let again = Repaired {
        epoch: Some(epoch("b")),
        ..Repaired::default()
    };
    h.subs.repaired(s(), job.generation, Ok(again));
    h.subs.lagged(1);
    let job = h.repair_job();
    assert_eq!(
        job.epoch, None,
        "the last comment is epoch a's: not checked"
    );
    h.subs
        .repaired(s(), job.generation, Ok(Repaired::default()));
    h.subs.on_message(&s(), Some(Inbound::Comment(comment(9))));
    h.subs.lagged(1);
    let job = h.repair_job();
    assert_eq!(job.epoch.as_ref().map(Epoch::as_str), Some("b"));
    h.subs
        .repaired(s(), job.generation, Ok(Repaired::default()));

    let resyncs = |h: &Harness| {
        h.delivered_texts()
            .iter()
            .filter(|t| t.starts_with("Resync"))
            .count()
    };
    assert_eq!(resyncs(&h), 1);
    h.subs.on_message(&s(), Some(Inbound::Epoch(epoch("b"))));
    assert_eq!(resyncs(&h), 1, "the epoch it already knows: nothing");
    h.subs.on_message(&s(), Some(Inbound::Epoch(epoch("c"))));
    assert_eq!(resyncs(&h), 2, "another instance found a lost tail");
    h.subs.lagged(1);
    assert_eq!(h.repair_job().epoch, None);
}

/// The subscriber's connection to the stream's node drops: the stream is repaired at once
/// (not only once the client reconnects), and the hub is told its kept history may be
/// stale, once per interruption. A drop of another node's connection leaves it alone.
#[tokio::test(start_paused = true)]
async fn a_dropped_connection_repairs_its_streams_at_once_and_tells_the_hub() {
    let mut h = harness();
    let _held = h.live();
    assert_eq!(
        h.interruptions(),
        0,
        "a first subscription interrupts nothing"
    );
    h.subs.on_disconnect("node-2");
    assert!(h.effects().is_empty(), "another node's connection");
    h.subs.on_disconnect("node-1");
    let job = h.repair_job();
    assert_eq!(job.repair, Repair::Resubscribe);
    assert_eq!(h.interruptions(), 1);
    h.subs.on_reconnect();
    let job = h.repair_job();
    assert_eq!(h.interruptions(), 1, "still the same interruption");
    h.subs
        .repaired(s(), job.generation, repaired_with(vec![comment(1)]));
    assert_eq!(h.delivered_texts(), ["c1"], "what it missed follows");
    h.subs.lagged(1);
    h.repair_job();
    assert_eq!(h.interruptions(), 2, "a repair of a live stream is another");
}

/// A new list of blocked terms announced on the channel makes the broker read them anew.
#[tokio::test(start_paused = true)]
async fn an_announced_terms_list_is_read_anew() {
    let kept = KeptTerms::default();
    let mut h = harness_keeping(kept.clone());
    let _held = h.live();
    kept.keep(&s(), Default::default());
    h.subs.on_message(&s(), Some(Inbound::Comment(comment(1))));
    assert!(kept.fresh(&s()).is_some(), "a comment changes nothing");
    let before = h.events.lock().unwrap().len();
    h.subs.on_message(&s(), Some(Inbound::Terms));
    assert!(kept.fresh(&s()).is_none());
    assert_eq!(
        h.events.lock().unwrap().len(),
        before,
        "nothing for the hub"
    );
}
