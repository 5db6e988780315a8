//! The verifier on hand-made logs: one viewer, comment `n` published at Unix ms `1000 + n`.

use super::*;

fn id(n: u64) -> CommentId {
    CommentId {
        ms: 1000 + n,
        seq: 0,
    }
}

fn ids(ns: &[u64]) -> Vec<CommentId> {
    ns.iter().map(|&n| id(n)).collect()
}

fn open(t: u64, after: Option<u64>) -> Event {
    Event::Open {
        t,
        instance: 0,
        after: after.map(id),
    }
}

fn init(t: u64, resumed: bool, ns: &[u64]) -> Event {
    Event::Init {
        t,
        resumed,
        epoch: "e".into(),
        ids: ids(ns),
    }
}

fn comments(t: u64, skipped: u64, ns: &[u64]) -> Event {
    Event::Comments {
        t,
        skipped,
        ids: ids(ns),
    }
}

fn close(t: u64, code: u16) -> Event {
    Event::Close { t, code }
}

/// Checks viewer 1's `log` against comments 1..=`published`, with one fault at t = 0.
fn verify(published: u64, log: Vec<Event>) -> Verdict {
    let published: Vec<u64> = (1..=published).collect();
    let log: Vec<(u32, Event)> = log.into_iter().map(|e| (1, e)).collect();
    let mut verdict = Verdict::default();
    check_stream(0, &ids(&published), None, &log, &[0], &mut verdict);
    verdict
}

fn silent(v: &Verdict) -> (u64, u64) {
    (v.delivery.silent_gaps, v.delivery.silent_missing)
}

#[test]
fn a_clean_log_passes() {
    let v = verify(
        8,
        vec![
            open(1003, None),
            init(1004, false, &[1, 2, 3]),
            comments(1005, 0, &[4]),
            comments(1006, 0, &[5]),
            Event::Hint {
                t: 1006,
                after_ms: 10,
            },
            close(1006, 1001),
            open(1007, Some(5)),
            init(1008, true, &[6, 7]),
            comments(1009, 0, &[8]),
        ],
    );
    let d = &v.delivery;
    assert_eq!(silent(&v), (0, 0));
    assert_eq!((d.duplicates, d.reorders, d.excess), (0, 0, 0));
    assert_eq!((d.received, d.resumed, d.accounted_gaps), (5, 1, 0));
    assert_eq!((d.attempts, d.connections, d.hints), (2, 2, 1));
    assert_eq!(v.windows[0].reconnected.len(), 1);
    assert!(v.evidence.is_empty());
}

#[test]
fn a_missing_comment_nothing_accounts_for_is_a_silent_gap() {
    let v = verify(
        5,
        vec![
            open(1002, None),
            init(1002, false, &[1, 2]),
            comments(1003, 0, &[3]),
            comments(1005, 0, &[5]),
        ],
    );
    assert_eq!(silent(&v), (1, 1));
    assert_eq!(v.evidence[0].what, "silent gap");
    assert_eq!(v.evidence[0].ids, vec![id(4).to_string()]);
    assert_eq!(v.windows[0].silent_missing, 1);
}

#[test]
fn a_resumed_init_must_carry_everything_after_its_after() {
    let v = verify(
        4,
        vec![
            open(1002, None),
            init(1002, false, &[1, 2]),
            close(1002, 0),
            open(1004, Some(2)),
            init(1004, true, &[4]),
        ],
    );
    assert_eq!(silent(&v), (1, 1));
    assert_eq!(v.evidence[0].ids, vec![id(3).to_string()]);
}

#[test]
fn a_duplicate_is_caught_across_a_resume() {
    let v = verify(
        4,
        vec![
            open(1002, None),
            init(1002, false, &[1, 2]),
            comments(1003, 0, &[3]),
            close(1003, 4001),
            open(1004, Some(3)),
            init(1004, true, &[3, 4]),
        ],
    );
    assert_eq!(v.delivery.duplicates, 1);
    assert_eq!(v.evidence[0].what, "duplicate");
    assert_eq!(silent(&v), (0, 0));
}

#[test]
fn a_reorder_is_caught_and_fills_its_hole() {
    let v = verify(
        4,
        vec![
            open(1002, None),
            init(1002, false, &[1, 2]),
            comments(1004, 0, &[4]),
            comments(1004, 0, &[3]),
        ],
    );
    assert_eq!(v.delivery.reorders, 1);
    assert!(v.evidence.iter().any(|e| e.what == "reorder"));
    assert_eq!(silent(&v), (0, 0), "late, not lost");
}

#[test]
fn skipped_accounts_for_comments_on_either_side_of_the_ones_sent() {
    // 3 and 5 left out of a batch whose 4 was sent: both told with 4's frame.
    let v = verify(
        6,
        vec![
            open(1002, None),
            init(1002, false, &[1, 2]),
            comments(1005, 2, &[4]),
            comments(1006, 0, &[6]),
        ],
    );
    assert_eq!(silent(&v), (0, 0));
    assert_eq!(v.delivery.skipped, 2);
    assert_eq!(v.delivery.excess, 1, "5 was told before a later one came");
}

#[test]
fn too_small_a_skipped_leaves_a_silent_gap() {
    let v = verify(
        6,
        vec![
            open(1002, None),
            init(1002, false, &[1, 2]),
            comments(1006, 1, &[6]),
        ],
    );
    assert_eq!(silent(&v), (1, 2));
}

#[test]
fn resumed_false_accounts_for_the_gap() {
    let v = verify(
        6,
        vec![
            open(1002, None),
            init(1002, false, &[1, 2]),
            close(1002, 0),
            open(1006, Some(2)),
            init(1006, false, &[5, 6]),
        ],
    );
    assert_eq!(silent(&v), (0, 0));
    assert_eq!(v.delivery.accounted_gaps, 1);
    assert_eq!(v.delivery.declared_missing, 2, "3 and 4");
    assert_eq!(v.windows[0].resumed_false, 1);
    assert_eq!(v.windows[0].declared_missing, 2);
}

#[test]
fn a_close_4002_accounts_for_the_gap() {
    // History lost: the new epoch's init is empty; 3..6 never reach the viewer.
    let v = verify(
        8,
        vec![
            open(1002, None),
            init(1002, false, &[1, 2]),
            close(1003, 4002),
            open(1007, None),
            init(1007, false, &[]),
            comments(1007, 0, &[7]),
            comments(1008, 0, &[8]),
        ],
    );
    assert_eq!(silent(&v), (0, 0));
    assert_eq!(v.delivery.accounted_gaps, 1);
    assert_eq!(v.delivery.declared_missing, 4);
    assert_eq!(v.windows[0].resync, 1);
    assert_eq!(v.delivery.closes.get("4002"), Some(&1));
}

#[test]
fn a_fresh_init_may_repeat_history_seen_before_it() {
    let v = verify(
        4,
        vec![
            open(1002, None),
            init(1002, false, &[1, 2]),
            close(1003, 4002),
            open(1003, None),
            init(1003, false, &[1, 2, 3]),
            comments(1004, 0, &[4]),
        ],
    );
    assert_eq!((v.delivery.duplicates, v.delivery.reorders), (0, 0));
    assert_eq!(silent(&v), (0, 0));
}

#[test]
fn an_empty_fresh_init_expects_everything_published_after_the_attempt() {
    let v = verify(
        5,
        vec![
            open(1003, None),
            init(1003, false, &[]),
            comments(1005, 0, &[5]),
        ],
    );
    assert_eq!(
        silent(&v),
        (1, 2),
        "3 and 4 came once the attempt had begun"
    );
}

#[test]
fn a_viewer_connected_at_the_end_without_the_end_marker_is_unfinished() {
    let log = vec![
        (1, open(1001, None)),
        (1, init(1001, false, &[1])),
        (2, open(1001, None)),
        (2, init(1001, false, &[1])),
        (2, comments(1002, 0, &[2])),
    ];
    let mut v = Verdict::default();
    check_stream(0, &ids(&[1, 2]), Some(id(2)), &log, &[], &mut v);
    assert_eq!(v.delivery.unfinished, 1);
    assert_eq!(v.delivery.viewers, 2);
}
