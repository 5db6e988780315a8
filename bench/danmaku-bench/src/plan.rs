//! Turning a scenario's parameters into worker plans: which stream each viewer watches (a
//! Zipf-like popularity, optionally one hot stream), which instance and source address each
//! connection uses, and where the posters are. It makes `ipc`'s plans and uses `proto`'s
//! target, nothing else.

use std::net::Ipv4Addr;

use crate::ipc::{Endpoint, Plan, PosterSpec, Scenario};
use crate::proto::Target;

/// The shape of a run, before it is split over workers.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub scenario: Scenario,
    pub target: Target,
    /// Instance base URLs (`ws://ip:port`).
    pub urls: Vec<String>,
    /// Source addresses connections are spread over.
    pub sources: Vec<Ipv4Addr>,
    /// Stream names, most popular first.
    pub streams: Vec<String>,
    /// Viewers per stream (same order as `streams`).
    pub viewers: Vec<u64>,
    /// Posters per stream.
    pub posters: Vec<u32>,
    /// Comments per second of each poster.
    pub poster_rate: f64,
    /// History comments posted to each stream before viewers connect.
    pub prefill: u32,
    pub churn_slots: u32,
    pub churn_hold_ms: (u64, u64),
    pub concurrency: usize,
    /// Fanout: user comments per second each connection asks for at most (`max_rate=`).
    pub max_rate: Option<u32>,
    /// Fanout: fraction of each poster's comments posted as system comments.
    pub system_share: f64,
    /// Bearer token of the service API (system comments, blocked terms).
    pub service_token: Option<String>,
    /// Fanout: blocked terms put on every stream before the run.
    pub blocked_terms: u32,
    /// Fanout: fraction of each poster's user comments that hold the shadow term.
    pub shadow_share: f64,
    /// Fanout: close every stream with posters with an end marker posted by a moderator.
    pub end_markers: bool,
    /// Viewers offer `permessage-deflate` (danmaku only).
    pub deflate: bool,
    /// Viewers arrive in random order across streams (see `--shuffled-arrival`).
    pub shuffled_arrival: bool,
    /// The Pusher app (`--target pusher` only).
    pub pusher: Option<crate::proto::pusher::App>,
}

/// Splits `total` into parts proportional to `weights` (largest remainder; the parts sum to
/// `total`).
pub(crate) fn apportion(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let missing = total - parts.iter().sum::<u64>();
    for &i in order.iter().take(missing as usize) {
        parts[i] += 1;
    }
    parts
}

/// Zipf weights `1 / (rank + 1)^s` for `n` streams; with `hot`, the first stream takes that
/// fraction of the total and the rest share the remainder by Zipf.
pub(crate) fn popularity(n: usize, s: f64, hot: Option<f64>) -> Vec<f64> {
    let zipf: Vec<f64> = (0..n).map(|i| 1.0 / ((i + 1) as f64).powf(s)).collect();
    match hot {
        Some(hot) if n > 1 => {
            let rest: f64 = zipf[1..].iter().sum();
            std::iter::once(hot)
                .chain(zipf[1..].iter().map(|w| (1.0 - hot) * w / rest))
                .collect()
        }
        _ => zipf,
    }
}

impl Layout {
    /// Offered deliveries per second: each poster's rate times its stream's viewers, less
    /// the shadowed comments (meant for no viewer).
    pub(crate) fn offered_deliveries_per_s(&self) -> f64 {
        let meant = 1.0 - self.shadow_share * (1.0 - self.system_share);
        self.viewers
            .iter()
            .zip(&self.posters)
            .map(|(&v, &p)| v as f64 * p as f64 * self.poster_rate * meant)
            .sum()
    }

    pub(crate) fn connections(&self) -> u64 {
        self.viewers.iter().sum::<u64>() + self.posters.iter().map(|&p| p as u64).sum::<u64>()
    }

    /// Fanout: user and system comments per second posted to each stream that its viewers
    /// are meant to receive (shadowed ones are not).
    pub(crate) fn stream_rates(&self) -> Vec<(f64, f64)> {
        self.posters
            .iter()
            .map(|&p| {
                let total = p as f64 * self.poster_rate;
                let user = total * (1.0 - self.system_share) * (1.0 - self.shadow_share);
                (user, total * self.system_share)
            })
            .collect()
    }

    fn endpoint(&self, stream: usize, n: usize) -> Endpoint {
        Endpoint {
            base: self.urls[n % self.urls.len()].clone(),
            stream: self.streams[stream].clone(),
            stream_index: stream as u32,
            source: self.sources[n % self.sources.len()],
            max_rate: self.max_rate,
        }
    }

    /// One plan per worker, plus one more for the posters when there are any: a poster that
    /// shares a process with thousands of busy viewers posts late, and the offered load would
    /// fall with the tool's backlog. Viewers of a stream alternate between instances, so every
    /// stream with two viewers or more crosses instances; viewers are dealt to workers in turn.
    /// The end markers' moderators go with the posters (they post once those are answered).
    ///
    /// `token(user, moderated)` signs a user's token, as a moderator of the stream named
    /// `moderated` when given.
    pub(crate) fn split(
        &self,
        workers: u32,
        token: impl Fn(&str, Option<&str>) -> Option<String>,
    ) -> Vec<Plan> {
        let has_posters = self.posters.iter().any(|&p| p > 0);
        let workers = workers.max(1);
        let mut plans: Vec<Plan> = (0..workers + u32::from(has_posters))
            .map(|worker| Plan {
                scenario: self.scenario,
                target: self.target,
                worker,
                viewers: Vec::new(),
                posters: Vec::new(),
                churn_slots: 0,
                churn_hold_ms: self.churn_hold_ms,
                churn_choices: Vec::new(),
                concurrency: self.concurrency,
                closers: Vec::new(),
                expect_end: self.end_markers && has_posters,
                service_token: self.service_token.clone(),
                deflate: self.deflate,
                pusher: self.pusher.clone(),
            })
            .collect();
        let count = workers as usize;
        // Connections are numbered in the order they are dealt: the number picks the
        // instance and the source address (and the worker, for history posters and viewers).
        let mut n = 0usize;
        self.deal_posters(&mut plans[count..], &mut n, &token);
        if self.prefill > 0 {
            self.deal_history(&mut plans[..count], &mut n, &token);
        }
        for stream in self.arrivals() {
            plans[n % count].viewers.push(self.endpoint(stream, n));
            n += 1;
        }
        if self.scenario.churns() {
            self.deal_churn(&mut plans);
        }
        plans
    }

    /// The stream of each viewer, in the order they connect: stream by stream, or shuffled.
    fn arrivals(&self) -> Vec<usize> {
        let mut arrivals: Vec<usize> = (0..self.streams.len())
            .flat_map(|stream| std::iter::repeat_n(stream, self.viewers[stream] as usize))
            .collect();
        if self.shuffled_arrival {
            use rand::seq::SliceRandom;
            arrivals.shuffle(&mut rand::rng());
        }
        arrivals
    }

    /// The posters, and each stream's end marker's moderator, to the posters' plan (the
    /// only one in `plans`, when there are posters).
    fn deal_posters(
        &self,
        plans: &mut [Plan],
        n: &mut usize,
        token: impl Fn(&str, Option<&str>) -> Option<String>,
    ) {
        let mut poster_index = 0u32;
        for stream in 0..self.streams.len() {
            for _ in 0..self.posters[stream] {
                let user = format!("poster-{poster_index}");
                plans[0].posters.push(PosterSpec {
                    index: poster_index,
                    endpoint: self.endpoint(stream, *n),
                    token: token(&user, None),
                    user,
                    rate: self.poster_rate,
                    prefill: 0,
                    system_share: self.system_share,
                    shadow_share: self.shadow_share,
                });
                poster_index += 1;
                *n += 1;
            }
            if self.end_markers && self.posters[stream] > 0 {
                let user = format!("bench-end-{stream}");
                plans[0].closers.push(PosterSpec {
                    index: u32::MAX - (1 << 20) - stream as u32,
                    endpoint: self.endpoint(stream, *n),
                    token: token(&user, Some(&self.streams[stream])),
                    user,
                    rate: 0.0,
                    prefill: 0,
                    system_share: 0.0,
                    shadow_share: 0.0,
                });
                *n += 1;
            }
        }
    }

    /// History: one extra poster per stream posts it (before any viewer connects), dealt to
    /// the viewers' plans in turn.
    fn deal_history(
        &self,
        plans: &mut [Plan],
        n: &mut usize,
        token: impl Fn(&str, Option<&str>) -> Option<String>,
    ) {
        let count = plans.len();
        for stream in 0..self.streams.len() {
            let user = format!("history-{stream}");
            plans[*n % count].posters.push(PosterSpec {
                index: u32::MAX - stream as u32,
                endpoint: self.endpoint(stream, *n),
                token: token(&user, None),
                user,
                rate: 0.0,
                prefill: self.prefill,
                system_share: 0.0,
                shadow_share: 0.0,
            });
            *n += 1;
        }
    }

    /// The connect-and-leave loops, spread evenly over every plan; each plan may connect to
    /// every stream on every instance, its source addresses turned by its worker number.
    fn deal_churn(&self, plans: &mut [Plan]) {
        let choices: Vec<Endpoint> = (0..self.streams.len())
            .flat_map(|s| (0..self.urls.len()).map(move |u| (s, u)))
            .map(|(s, u)| self.endpoint(s, u))
            .collect();
        let slots = apportion(self.churn_slots as u64, &vec![1.0; plans.len()]);
        for (plan, slots) in plans.iter_mut().zip(slots) {
            plan.churn_slots = slots as u32;
            plan.churn_choices = choices
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, mut e)| {
                    e.source = self.sources[(i + plan.worker as usize) % self.sources.len()];
                    e
                })
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportions_exactly() {
        let parts = apportion(10_000, &popularity(100, 1.0, None));
        assert_eq!(parts.iter().sum::<u64>(), 10_000);
        assert!(parts.windows(2).all(|w| w[0] >= w[1]), "{parts:?}");
        assert!(parts[0] > 1_500 && parts[0] < 2_000, "head {}", parts[0]);
        let hot = apportion(1000, &popularity(10, 1.0, Some(0.5)));
        assert_eq!(hot[0], 500);
        assert_eq!(hot.iter().sum::<u64>(), 1000);
        assert_eq!(apportion(5, &[]), Vec::<u64>::new());
    }

    #[test]
    fn splits_over_workers_instances_and_sources() {
        let layout = Layout {
            scenario: Scenario::Fanout,
            target: Target::Danmaku,
            urls: vec!["ws://127.0.0.1:1".into(), "ws://127.0.0.1:2".into()],
            sources: vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)],
            streams: vec!["a".into(), "b".into()],
            viewers: vec![6, 2],
            posters: vec![2, 1],
            poster_rate: 5.0,
            prefill: 3,
            churn_slots: 0,
            churn_hold_ms: (0, 0),
            concurrency: 10,
            max_rate: Some(7),
            system_share: 0.25,
            service_token: Some("svc".into()),
            blocked_terms: 0,
            shadow_share: 0.0,
            end_markers: true,
            deflate: true,
            shuffled_arrival: false,
            pusher: None,
        };
        assert_eq!(layout.stream_rates(), vec![(7.5, 2.5), (3.75, 1.25)]);
        assert_eq!(
            layout.offered_deliveries_per_s(),
            6.0 * 2.0 * 5.0 + 2.0 * 5.0
        );
        // A fifth of the user comments shadowed: meant for no viewer.
        let shadowed = Layout {
            blocked_terms: 1,
            shadow_share: 0.2,
            ..layout.clone()
        };
        assert_eq!(shadowed.stream_rates(), vec![(6.0, 2.5), (3.0, 1.25)]);
        let meant = 1.0 - 0.2 * 0.75;
        assert!((shadowed.offered_deliveries_per_s() - 70.0 * meant).abs() < 1e-9);
        let plans = layout.split(2, |user, moderated| {
            Some(format!("t-{user}-{}", moderated.unwrap_or("")))
        });
        assert_eq!(plans.len(), 3, "two for the viewers, one for the posters");
        assert_eq!(plans[2].posters.len(), 3);
        assert!(plans[2].viewers.is_empty());
        let viewers: usize = plans.iter().map(|p| p.viewers.len()).sum();
        let posters: usize = plans.iter().map(|p| p.posters.len()).sum();
        assert_eq!(viewers, 8);
        assert_eq!(
            posters,
            3 + 2,
            "three posters and one history poster per stream"
        );
        let on_a: Vec<&str> = plans
            .iter()
            .flat_map(|p| &p.viewers)
            .filter(|e| e.stream == "a")
            .map(|e| e.base.as_str())
            .collect();
        assert!(on_a.contains(&"ws://127.0.0.1:1") && on_a.contains(&"ws://127.0.0.1:2"));
        assert!(plans[..2].iter().all(|p| p.viewers.len() == 4));
        assert_eq!(plans[2].posters[0].token.as_deref(), Some("t-poster-0-"));
        assert_eq!(plans[2].posters[0].system_share, 0.25);
        // One end marker per stream with posters, from a moderator of that stream.
        let closers: Vec<(&str, Option<&str>)> = plans[2]
            .closers
            .iter()
            .map(|c| (c.endpoint.stream.as_str(), c.token.as_deref()))
            .collect();
        assert_eq!(
            closers,
            vec![
                ("a", Some("t-bench-end-0-a")),
                ("b", Some("t-bench-end-1-b"))
            ]
        );
        assert!(plans.iter().all(|p| p.expect_end && p.deflate));
        assert!(
            plans
                .iter()
                .all(|p| p.service_token.as_deref() == Some("svc"))
        );
        assert!(
            plans
                .iter()
                .flat_map(|p| &p.viewers)
                .all(|e| e.max_rate == Some(7))
        );
        // Arriving shuffled: the same viewers of each stream, still dealt to the instances
        // in turn.
        let shuffled = Layout {
            shuffled_arrival: true,
            viewers: vec![600, 200],
            ..layout.clone()
        };
        let plans = shuffled.split(2, |_, _| None);
        let viewers: Vec<&Endpoint> = plans.iter().flat_map(|p| &p.viewers).collect();
        assert_eq!(viewers.iter().filter(|e| e.stream == "a").count(), 600);
        assert_eq!(viewers.iter().filter(|e| e.stream == "b").count(), 200);
        let on_first = viewers.iter().filter(|e| e.base.ends_with(":1")).count();
        assert_eq!(on_first, 400, "round robin over the arrivals");
        let arrivals = shuffled.arrivals();
        assert!(!arrivals.is_sorted(), "shuffled, not stream by stream");
    }
}
