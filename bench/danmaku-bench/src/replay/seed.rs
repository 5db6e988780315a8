//! Seeds a stream's replay index in Redis as danmaku keeps it (the contract's section 10):
//! ten-minute segments `danmaku:{<id>}:replay:<segment>`, sorted sets of `<id> <body>` scored
//! by media time, and the bookkeeping keys `replay-segs`, `replay-counts` and `replay-n`.
//! Comments spread evenly over [from, to) of media time, each a user comment of about the
//! size of a chat line.

use anyhow::Context;

const SEGMENT_MS: u64 = 600_000;
/// Members per ZADD.
const BATCH: u64 = 5_000;
/// How long the seeded keys live: a day after the newest comment, as danmaku's default.
const KEEP_MS: u64 = 86_400_000;

pub(super) async fn seed(
    url: &str,
    stream: &str,
    n: u64,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let client = redis::Client::open(url).with_context(|| format!("{url}: not a Redis URL"))?;
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connect to {url}"))?;
    let prefix = format!("danmaku:{{{stream}}}:replay:");
    let step = ((to - from) as f64 / n as f64).max(1.0);
    let mut counts: std::collections::BTreeMap<u64, u64> = Default::default();
    let mut i = 0u64;
    while i < n {
        let mut pipe = redis::pipe();
        let end = (i + BATCH).min(n);
        let mut by_segment: std::collections::BTreeMap<u64, Vec<(u64, String)>> =
            Default::default();
        for k in i..end {
            let media = from + (k as f64 * step) as u64;
            by_segment
                .entry(media / SEGMENT_MS)
                .or_default()
                .push((media, member(stream, k, media)));
        }
        for (segment, members) in by_segment {
            *counts.entry(segment).or_default() += members.len() as u64;
            let key = format!("{prefix}{segment}");
            pipe.cmd("ZADD").arg(&key);
            for (score, member) in &members {
                pipe.arg(*score).arg(member);
            }
            pipe.ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(KEEP_MS).ignore();
        }
        let _: () = pipe.query_async(&mut redis).await.context("seed")?;
        i = end;
    }
    let mut pipe = redis::pipe();
    let base = format!("danmaku:{{{stream}}}:");
    for (segment, count) in &counts {
        pipe.cmd("ZADD")
            .arg(format!("{base}replay-segs"))
            .arg(*segment)
            .arg(*segment)
            .ignore();
        pipe.cmd("HSET")
            .arg(format!("{base}replay-counts"))
            .arg(*segment)
            .arg(*count)
            .ignore();
    }
    pipe.cmd("SET")
        .arg(format!("{base}replay-n"))
        .arg(n)
        .ignore();
    for key in ["replay-segs", "replay-counts", "replay-n"] {
        pipe.cmd("PEXPIRE")
            .arg(format!("{base}{key}"))
            .arg(KEEP_MS + 1_200_000)
            .ignore();
    }
    let _: () = pipe
        .query_async(&mut redis)
        .await
        .context("seed the bookkeeping")?;
    Ok(())
}

/// The `k`th comment as a segment member, `<id> <body>`: posted a second after its moment.
fn member(stream: &str, k: u64, media: u64) -> String {
    let id = format!("{}-{}", media + 1_000, k % 10);
    let body = serde_json::json!({
        "stream_id": stream,
        "kind": "user",
        "user": {"id": format!("viewer-{}", k % 5_000), "name": format!("viewer {}", k % 5_000)},
        "text": format!("replayed comment number {k}, about that moment"),
        "data": null,
        "ts": media + 1_000,
        "media_ts": media,
    });
    format!("{id} {body}")
}
