//! `danmaku-bench soak`: fan-out, churn and moderation together for a long while, watched from
//! outside. The load itself is the coordinator's (viewers that count every comment, posters,
//! connect-and-leave loops); this module adds what runs beside it:
//!
//! - a sampler that reads every instance's RSS, broker subscriptions and connections, and every
//!   Redis node's shard channels, memory and key count, once per `--sample-every`;
//! - the [`moderator`], deleting comments and banning and unbanning users throughout;
//! - after the load has left, the leak check: once the unsubscribe linger has passed, every
//!   instance must hold no subscription and Redis no danmaku channel.
//!
//! The verdict: RSS growth from the first sample at or after `--growth-after` to the last
//! sample of the measured phase under `--max-growth-pct` (5 %) on every instance, no subscription
//! left, no moderation failure, and nothing lost, duplicated or reordered.
//!
//! What it writes into the result is `result::soak`'s; it uses `sampling` (the instances'
//! processes), `procfs`, `http` and `proto`, and prints nothing (`console` does).

mod moderator;
mod probe;

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::procfs;
use crate::result::Summary;
use crate::result::soak::{Growth, InstanceSample, Moderation, Sample, SoakReport};
use crate::sampling::Instance;

pub(crate) use moderator::Moderator;

/// How long after the linger the leak check keeps polling for subscriptions to go.
const LEAK_GRACE: Duration = Duration::from_secs(10);

/// What the soak watches.
pub(crate) struct Settings {
    /// Instances, `ws://ip:port`, each with its process (same order).
    pub instances: Vec<(String, Instance)>,
    /// Redis nodes, `host:port` (every master of a cluster); empty with the embedded broker.
    pub redis: Vec<String>,
    pub sample_every: Duration,
    /// Where the growth baseline is taken (after the warm-up).
    pub growth_after: Duration,
    /// The most RSS may grow after the baseline, percent.
    pub max_growth_pct: f64,
    /// Samples after this are not under load any more (the measured phase's length).
    pub loaded_for: Duration,
    /// The instances' `DANMAKU_UNSUBSCRIBE_LINGER_MS`.
    pub linger: Duration,
}

/// The sampler and the moderator, running beside the load.
pub(crate) struct Watch {
    settings: Settings,
    started: Instant,
    stop: watch::Sender<bool>,
    sampler: JoinHandle<Vec<Sample>>,
    moderator: JoinHandle<Moderation>,
}

impl Watch {
    /// Starts sampling (at once, then every `sample_every`) and moderating.
    pub(crate) fn start(settings: Settings, moderator: Moderator) -> Watch {
        let started = Instant::now();
        let (stop, stopped) = watch::channel(false);
        let sampler = {
            let (instances, redis) = (settings.instances.clone(), settings.redis.clone());
            let (every, mut stopped) = (settings.sample_every, stopped.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut tick = tokio::time::interval(every);
                loop {
                    let stop = tokio::select! {
                        _ = tick.tick() => false,
                        _ = stopped.wait_for(|s| *s) => true,
                    };
                    if stop {
                        return samples;
                    }
                    samples.push(sample(started, &instances, &redis).await);
                }
            })
        };
        let moderator = tokio::spawn(moderator.run(stopped));
        Watch {
            settings,
            started,
            stop,
            sampler,
            moderator,
        }
    }

    /// Call once the load has finished and every connection is closed: stops the sampler and
    /// the moderator, checks for leaked subscriptions, and judges the run with its summary.
    pub(crate) async fn finish(self, summary: &Summary) -> anyhow::Result<SoakReport> {
        let _ = self.stop.send(true);
        let samples = self.sampler.await?;
        let moderation = self.moderator.await?;
        let s = &self.settings;
        // Subscriptions go a linger after the last viewer; allow for Redis's answer too.
        tokio::time::sleep(s.linger).await;
        let deadline = Instant::now() + LEAK_GRACE;
        let after = loop {
            let now = sample(self.started, &s.instances, &s.redis).await;
            if Instant::now() >= deadline || left(&now) == (0, 0) {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let (leaked_subscriptions, redis_channels_left) = left(&after);
        let growth = growth(&samples, s.growth_after, s.loaded_for);
        let mut report = SoakReport {
            samples,
            growth,
            moderation,
            after,
            leaked_subscriptions,
            redis_channels_left,
            failures: Vec::new(),
        };
        report.failures = judge(&report, s, summary);
        Ok(report)
    }
}

async fn sample(started: Instant, instances: &[(String, Instance)], redis: &[String]) -> Sample {
    let t_s = started.elapsed().as_secs_f64();
    let mut sampled = Vec::new();
    for (base, instance) in instances {
        let metrics = probe::metrics(base).await.ok();
        let gauge = |name| metrics.as_deref().and_then(|m| probe::gauge(m, name));
        sampled.push(InstanceSample {
            name: instance.name.clone(),
            rss_bytes: procfs::rss_bytes(&instance.pid.to_string()),
            subscribed: gauge(probe::SUBSCRIBED),
            connections: gauge(probe::CONNECTIONS),
        });
    }
    let mut nodes = Vec::new();
    for node in redis {
        match probe::redis_node(node).await {
            Ok(n) => nodes.push(n),
            Err(e) => eprintln!("soak: Redis node {node}: {e:#}"),
        }
    }
    Sample {
        t_s,
        instances: sampled,
        redis: nodes,
    }
}

/// Subscriptions the instances hold and danmaku channels Redis has, in a sample. An instance
/// that did not answer `/metrics` counts as holding one: unknown is not zero.
fn left(sample: &Sample) -> (u64, u64) {
    let instances = sample
        .instances
        .iter()
        .map(|i| i.subscribed.map_or(1, |s| s.max(0.0) as u64))
        .sum();
    let redis = sample.redis.iter().map(|n| n.shard_channels).sum();
    (instances, redis)
}

/// Each instance's RSS from the first sample at or after `after` to the last one within
/// `loaded_for`; none for an instance without such a pair.
fn growth(samples: &[Sample], after: Duration, loaded_for: Duration) -> Vec<Growth> {
    let names: Vec<&str> = samples
        .first()
        .map(|s| s.instances.iter().map(|i| i.name.as_str()).collect())
        .unwrap_or_default();
    let rss = |s: &Sample, name: &str| {
        s.instances
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.rss_bytes)
    };
    let mut out = Vec::new();
    for name in names {
        let loaded: Vec<(f64, u64)> = samples
            .iter()
            .filter(|s| s.t_s >= after.as_secs_f64() && s.t_s <= loaded_for.as_secs_f64())
            .filter_map(|s| Some((s.t_s, rss(s, name)?)))
            .collect();
        let (Some(&(t0, base)), Some(&(t1, last))) = (loaded.first(), loaded.last()) else {
            continue;
        };
        if t1 <= t0 || base == 0 {
            continue;
        }
        out.push(Growth {
            name: name.to_owned(),
            baseline_t_s: t0,
            baseline_bytes: base,
            last_t_s: t1,
            last_bytes: last,
            max_bytes: loaded.iter().map(|p| p.1).max().unwrap_or(last),
            growth_pct: (last as f64 - base as f64) * 100.0 / base as f64,
        });
    }
    out
}

fn judge(report: &SoakReport, settings: &Settings, summary: &Summary) -> Vec<String> {
    let mut failures = Vec::new();
    if report.growth.len() < settings.instances.len() {
        failures.push(format!(
            "RSS growth not judged for every instance: no two samples between {:.0} s and {:.0} s",
            settings.growth_after.as_secs_f64(),
            settings.loaded_for.as_secs_f64()
        ));
    }
    for g in &report.growth {
        if g.growth_pct >= settings.max_growth_pct {
            failures.push(format!(
                "{}: RSS grew {:.1} % ({} → {} bytes) after the warm-up",
                g.name, g.growth_pct, g.baseline_bytes, g.last_bytes
            ));
        }
    }
    if report.leaked_subscriptions > 0 || report.redis_channels_left > 0 {
        failures.push(format!(
            "leaked: {} subscriptions held by instances, {} channels in Redis, after everyone left",
            report.leaked_subscriptions, report.redis_channels_left
        ));
    }
    if report.moderation.failures > 0 {
        failures.push(format!(
            "{} moderation failures",
            report.moderation.failures
        ));
    }
    for (what, n) in [
        ("lost", summary.losses),
        ("lost system comments", summary.system_losses),
        ("duplicated", summary.duplicates),
        ("reordered", summary.order_violations),
    ] {
        match n {
            Some(0) => {}
            Some(n) => failures.push(format!("{n} comments {what}")),
            None => failures.push(format!("no count of comments {what}")),
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::soak::RedisNode;

    fn at(t_s: f64, rss: u64) -> Sample {
        Sample {
            t_s,
            instances: vec![InstanceSample {
                name: "a".into(),
                rss_bytes: Some(rss),
                subscribed: Some(0.0),
                connections: None,
            }],
            redis: Vec::new(),
        }
    }

    #[test]
    fn growth_runs_from_the_warm_up_to_the_last_loaded_sample() {
        let samples = [
            at(0.0, 10),
            at(60.0, 100),
            at(120.0, 104),
            at(180.0, 103),
            at(240.0, 50),
        ];
        let g = growth(&samples, Duration::from_secs(60), Duration::from_secs(200));
        assert_eq!(g.len(), 1);
        assert_eq!(
            (g[0].baseline_bytes, g[0].last_bytes, g[0].max_bytes),
            (100, 103, 104)
        );
        assert!((g[0].growth_pct - 3.0).abs() < 1e-9);
        assert!(
            growth(
                &samples[..2],
                Duration::from_secs(60),
                Duration::from_secs(200)
            )
            .is_empty()
        );
    }

    #[test]
    fn an_instance_that_does_not_answer_counts_as_leaking() {
        let mut s = at(0.0, 1);
        assert_eq!(left(&s), (0, 0));
        s.instances[0].subscribed = None;
        s.redis.push(RedisNode {
            shard_channels: 2,
            ..RedisNode::default()
        });
        assert_eq!(left(&s), (1, 2));
    }
}
