//! Viewer counts across instances: each instance reports its local count per stream into a
//! hash of the stream (instance → count and expiry) when it changed, checked every second,
//! and every [`REFRESH`](super::reports::REFRESH) when it did not; the sum over the reports
//! of live instances (see [`leases`](super::leases)) that have not expired is the stream's
//! count, and its peak is kept beside it. A report that changes the sum announces it on the
//! stream's channel, so the other instances with viewers of it learn it at once (see
//! [`Reports`](super::reports::Reports)): the Redis work follows the viewers who come and go,
//! not the streams times the instances.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::RedisBroker;
use super::client::run;
use super::keys::StreamKeys;
use super::scripts;
use crate::background::Background;
use crate::broker::{BrokerError, StreamStats};
use crate::domain::{StreamId, now_ms};

/// An instance's viewer report expires unless refreshed within this long (a gone instance's
/// reports leave the sums sooner, through the leases).
pub(super) const VIEWER_REPORT_TTL: Duration = Duration::from_secs(600);
/// The peak of a stream with no viewers and no comments expires after this long.
const EMPTY_PEAK_TTL: Duration = Duration::from_secs(30);
/// Viewer reports sent at once. A report in flight holds a few KiB (the client's command
/// future): all of an instance's streams at once, every second, were ~7 KiB per stream of
/// peak heap that the allocator then kept (RSS) with 1,000 streams on an instance.
const REPORTS_IN_FLIGHT: usize = 32;
/// How often local viewer counts are checked for a report.
const VIEWER_REPORT_EVERY: Duration = Duration::from_secs(1);

impl RedisBroker {
    pub(super) fn viewers_changed(&self, stream: &StreamId, delta: i64) {
        *self.local_viewers.entry(stream.clone()).or_insert(0) += delta;
    }

    fn local_count(&self, stream: &StreamId) -> i64 {
        self.local_viewers.get(stream).map_or(0, |c| *c)
    }

    /// The viewer counts across instances: the last known sum, corrected by how this
    /// instance's own count changed since its report; a stream never reported yet is
    /// reported now.
    pub(in crate::broker) async fn viewer_counts(
        &self,
        streams: &[StreamId],
    ) -> Result<Vec<u64>, BrokerError> {
        let mut counts = Vec::with_capacity(streams.len());
        for stream in streams {
            let cached = self.reports.get(stream);
            let count = match cached {
                Some((sum, ours)) => sum.saturating_add_signed(self.local_count(stream) - ours),
                None => self.report(stream).await?.viewer_count,
            };
            counts.push(count);
        }
        Ok(counts)
    }

    pub(in crate::broker) async fn stats(
        &self,
        stream: &StreamId,
    ) -> Result<StreamStats, BrokerError> {
        let local = self.local_viewers.get(stream).map(|c| *c);
        match local {
            Some(_) => self.report(stream).await,
            None => Ok(self.viewers_script(stream, -1).await?.0),
        }
    }

    /// Reports this instance's local count of `stream` and remembers the answer.
    async fn report(&self, stream: &StreamId) -> Result<StreamStats, BrokerError> {
        let ours = self.local_count(stream).max(0);
        let (stats, version) = self.viewers_script(stream, ours).await?;
        self.reports
            .reported(stream, stats.viewer_count, ours, version);
        Ok(stats)
    }

    /// The script's answer, and the Redis time (µs) of its sum.
    async fn viewers_script(
        &self,
        stream: &StreamId,
        ours: i64,
    ) -> Result<(StreamStats, u64), BrokerError> {
        let keys = StreamKeys::new(stream);
        let mut args = vec![
            self.pod.clone(),
            ours.to_string(),
            now_ms().to_string(),
            VIEWER_REPORT_TTL.as_millis().to_string(),
            super::STATE_TTL.as_millis().to_string(),
            EMPTY_PEAK_TTL.as_millis().to_string(),
        ];
        args.extend(self.leases.gone().iter().cloned());
        let reply: Vec<String> = run(
            &self.client,
            &scripts::VIEWERS,
            vec![keys.viewers, keys.peak, keys.count, keys.channel],
            args,
        )
        .await?;
        let get = |i: usize| reply.get(i).and_then(|n| n.parse().ok()).unwrap_or(0);
        let stats = StreamStats {
            viewer_count: get(0),
            peak_viewer_count: get(1),
            comment_count: get(2),
        };
        Ok((stats, get(3)))
    }

    /// Reports every stream whose local count is due (changed, unreported for
    /// [`REFRESH`](super::reports::REFRESH), or to be rechecked; a count that fell to 0
    /// once more),
    /// [`REPORTS_IN_FLIGHT`] at a time.
    async fn report_all(&self) {
        let streams: Vec<StreamId> = self
            .local_viewers
            .iter()
            .filter(|e| self.reports.take_due(e.key(), *e.value()))
            .map(|e| e.key().clone())
            .collect();
        let mut reports = futures_util::stream::iter(streams)
            .map(|stream| async move {
                let result = self.report(&stream).await;
                (stream, result)
            })
            .buffer_unordered(REPORTS_IN_FLIGHT);
        while let Some((stream, result)) = reports.next().await {
            let stream = &stream;
            match result {
                Ok(_) => {
                    let gone = self
                        .local_viewers
                        .remove_if(stream, |_, count| *count <= 0)
                        .is_some();
                    if gone {
                        self.reports.forget(stream);
                    }
                }
                Err(error) => {
                    tracing::debug!(%stream, %error, "viewer report failed");
                    self.reports.recheck(stream);
                }
            }
        }
    }
}

pub(super) fn spawn_reporter(broker: Arc<RedisBroker>, background: &Background) {
    background.every(VIEWER_REPORT_EVERY, move || {
        let broker = broker.clone();
        async move { broker.report_all().await }
    });
}
