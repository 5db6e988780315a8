//! The embedded broker alone: ids, history, the linger, idempotency, bans, deletions, sweeps,
//! and what moderators change.

use super::*;
use crate::broker::{BanMode, Dedup, HELD_FOR, MAX_HELD_FOR_REVIEW, Route};
use crate::domain::{CommentText, IdempotencyKey, User, UserId};
use crate::metrics::Latencies;
use std::sync::Mutex;

const LINGER: Duration = Duration::from_secs(2);

fn broker(history_len: usize) -> (Arc<MemoryBroker>, Arc<Mutex<Vec<BrokerEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    let sink: EventSink = Arc::new(move |e| sink_seen.lock().unwrap().push(e));
    let metrics = Arc::new(Metrics::new(Latencies::noop()));
    (
        Arc::new(MemoryBroker::new(history_len, LINGER, sink, metrics)),
        seen,
    )
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn new_comment(stream: &str, text: &str, key: Option<&str>) -> NewComment {
    NewComment {
        stream: StreamId::parse(stream).unwrap(),
        kind: CommentKind::User,
        user: Some(User {
            id: user("u1"),
            name: "U".into(),
        }),
        text: CommentText::parse(text.into(), 200).unwrap(),
        data: None,
        media_ts: None,
        by_moderator: false,
        dedup: key.map(|k| Dedup::Service(IdempotencyKey::parse(k).unwrap())),
        rate: None,
        by_service: false,
        roles: Vec::new(),
        route: Route::Public,
    }
}

fn published(p: Result<Published, BrokerError>) -> Comment {
    match p.unwrap() {
        Published::New(c) => c,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ids_increase_and_history_is_capped_and_resumable_only_inside_it() {
    let (b, _) = broker(3);
    let s = StreamId::parse("s").unwrap();
    let ids: Vec<CommentId> = (0..5)
        .map(|i| published(b.publish(new_comment("s", &i.to_string(), None))).id)
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let latest = b.history(&s, HistoryQuery::Latest { limit: 10 });
    assert_eq!(
        latest.comments.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids[2..]
    );
    let resume = b.history(
        &s,
        HistoryQuery::After {
            id: ids[1],
            limit: 10,
        },
    );
    assert!(resume.complete);
    assert_eq!(resume.comments.len(), 3);
    let too_old = b.history(
        &s,
        HistoryQuery::After {
            id: ids[0],
            limit: 10,
        },
    );
    assert!(!too_old.complete);
    let page = b.history(
        &s,
        HistoryQuery::After {
            id: ids[2],
            limit: 1,
        },
    );
    assert_eq!(page.comments[0].id, ids[3]);
    assert_eq!(b.stats(&s).comment_count, 5);
}

#[tokio::test(start_paused = true)]
async fn delivers_while_held_and_for_the_linger_after() {
    let (b, seen) = broker(10);
    let s = StreamId::parse("s").unwrap();
    published(b.publish(new_comment("s", "before", None)));
    b.acquire(&s);
    b.acquire(&s);
    assert_eq!(
        b.metrics.streams_subscribed(),
        1,
        "one subscription, two holders"
    );
    published(b.publish(new_comment("s", "held", None)));
    b.release(&s);
    b.release(&s);
    published(b.publish(new_comment("s", "lingering", None)));
    tokio::time::sleep(LINGER + Duration::from_millis(1)).await;
    assert_eq!(b.metrics.streams_subscribed(), 0);
    published(b.publish(new_comment("s", "after", None)));
    let texts: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            BrokerEvent::Comments { comments, .. } => comments[0].text.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["held", "lingering"]);
}

#[tokio::test(start_paused = true)]
async fn a_hold_taken_during_the_linger_keeps_the_subscription() {
    let (b, _) = broker(10);
    let s = StreamId::parse("s").unwrap();
    b.acquire(&s);
    b.release(&s);
    tokio::time::sleep(LINGER / 2).await;
    b.acquire(&s);
    tokio::time::sleep(LINGER * 2).await;
    assert_eq!(b.metrics.streams_subscribed(), 1);
    assert_eq!(b.stats(&s).viewer_count, 1);
    b.release(&s);
    tokio::time::sleep(LINGER * 2).await;
    assert_eq!(b.metrics.streams_subscribed(), 0);
    assert_eq!(b.stats(&s).viewer_count, 0);
}

#[test]
fn idempotency_keys_return_the_first_comment() {
    let (b, _) = broker(10);
    let first = published(b.publish(new_comment("s", "one", Some("k"))));
    match b.publish(new_comment("s", "two", Some("k"))).unwrap() {
        Published::Duplicate(c) => assert_eq!(c, first),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.stats(&StreamId::parse("s").unwrap()).comment_count, 1);
}

#[test]
fn bans_refuse_comments_and_expire() {
    let (b, _) = broker(10);
    let s = StreamId::parse("s").unwrap();
    b.ban(
        &s,
        &user("u1"),
        Duration::from_secs(60),
        BanMode::Ban,
        false,
    );
    assert_eq!(b.ban_mode(&s, &user("u1")), Some(BanMode::Ban));
    assert_eq!(
        b.publish(new_comment("s", "x", None)).unwrap_err(),
        BrokerError::Banned
    );
    b.ban(&s, &user("u1"), Duration::ZERO, BanMode::Ban, false);
    assert_eq!(b.ban_mode(&s, &user("u1")), None);
}

#[test]
fn delete_removes_from_history() {
    let (b, _) = broker(10);
    let s = StreamId::parse("s").unwrap();
    let c = published(b.publish(new_comment("s", "x", None)));
    b.delete(&s, c.id, None).unwrap();
    assert!(
        b.history(&s, HistoryQuery::Latest { limit: 10 })
            .comments
            .is_empty()
    );
    assert_eq!(b.delete(&s, c.id, None), Err(BrokerError::NotFound));
}

#[test]
fn viewers_and_peak_and_sweep() {
    let (b, _) = broker(10);
    let s = StreamId::parse("s").unwrap();
    b.viewers_changed(&s, 1);
    b.viewers_changed(&s, 1);
    b.viewers_changed(&s, -1);
    assert_eq!(
        b.stats(&s),
        StreamStats {
            viewer_count: 1,
            peak_viewer_count: 2,
            comment_count: 0
        }
    );
    let far = Instant::now() + STREAM_IDLE_EXPIRY + Duration::from_secs(1);
    assert_eq!(b.sweep(far), 0, "a watched stream is kept");
    b.viewers_changed(&s, -1);
    assert_eq!(
        b.sweep(Instant::now()),
        1,
        "an unwatched stream without comments goes at once"
    );
    assert_eq!(b.stream_count(), 0);
    published(b.publish(new_comment("s", "kept", None)));
    assert_eq!(
        b.sweep(Instant::now()),
        0,
        "a stream with comments stays for a day"
    );
    assert_eq!(b.sweep(far), 1);
}

#[test]
fn held_comments_expire_by_count_and_age_and_are_counted() {
    let (b, _) = broker(10);
    let s = StreamId::parse("s").unwrap();
    let hold = |text: &str| {
        let mut new = new_comment("s", text, None);
        new.route = Route::Hold;
        match b.publish(new).unwrap() {
            Published::Held { comment, .. } => comment.id,
            other => panic!("not held: {other:?}"),
        }
    };
    let expired = || {
        b.metrics
            .held_by_outcome()
            .find(|(outcome, _)| *outcome == "expired")
            .unwrap()
            .1
    };
    let first = hold("first");
    for i in 1..MAX_HELD_FOR_REVIEW {
        hold(&format!("held {i}"));
    }
    assert_eq!(expired(), 0, "{MAX_HELD_FOR_REVIEW} fit");
    hold("one too many");
    assert_eq!(expired(), 1, "the oldest made room");
    assert_eq!(b.approve(&s, first), Err(BrokerError::NotFound));
    assert_eq!(b.held(&s).len(), MAX_HELD_FOR_REVIEW);

    b.sweep(Instant::now() + HELD_FOR);
    assert_eq!(
        expired(),
        1 + MAX_HELD_FOR_REVIEW as u64,
        "an hour later all are gone"
    );
    assert!(b.held(&s).is_empty());
}

/// An approved held comment keeps the moment it was written, but never more than a post may
/// be behind its publication: a replay window that was final stays final.
#[test]
fn an_approved_comment_keeps_its_moment_within_the_media_window() {
    let (b, _) = broker(10);
    let s = StreamId::parse("s").unwrap();
    let hold = |media_ts: u64| {
        let mut new = new_comment("s", "held", None);
        new.route = Route::Hold;
        new.media_ts = Some(media_ts);
        match b.publish(new).unwrap() {
            Published::Held { comment, .. } => comment.id,
            other => panic!("not held: {other:?}"),
        }
    };
    let recent = hold(now_ms() - 10_000);
    let approved = b.approve(&s, recent).unwrap();
    assert!(
        approved.ts - approved.media_ts.unwrap() >= 10_000,
        "its own moment"
    );
    let old = hold(now_ms() - 119_500);
    std::thread::sleep(Duration::from_millis(1_000));
    let approved = b.approve(&s, old).unwrap();
    let behind = approved.ts - approved.media_ts.unwrap();
    assert_eq!(
        behind,
        crate::domain::MEDIA_BEHIND_MS,
        "clamped to the window"
    );
}
