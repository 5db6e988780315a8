//! Latency histograms: recorded in microseconds by the workers, shipped to the coordinator as
//! (value, count) pairs, merged there into percentiles and CDFs. It produces `result`'s
//! percentiles and CDF points and uses nothing else of the crate.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::result::{CdfPoint, Percentiles};

/// Highest latency recorded, in microseconds (ten minutes, longer than any run's settle
/// time); anything slower is clamped to it.
const MAX_US: u64 = 600_000_000;

/// A latency histogram in microseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub(crate) struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"))
    }
}

/// A histogram as it crosses the process boundary: the recorded buckets only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Buckets(pub Vec<(u64, u64)>);

impl Latency {
    pub(crate) fn record_us(&mut self, us: i64) {
        let us = u64::try_from(us).unwrap_or(0).clamp(1, MAX_US);
        self.0.record(us).expect("value within bounds");
    }

    pub(crate) fn reset(&mut self) {
        self.0.reset();
    }

    pub(crate) fn buckets(&self) -> Buckets {
        Buckets(
            self.0
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    pub(crate) fn merge(&mut self, buckets: &Buckets) {
        for &(value, count) in &buckets.0 {
            self.0
                .record_n(value.clamp(1, MAX_US), count)
                .expect("value within bounds");
        }
    }

    /// Percentiles in milliseconds; `None` when nothing was recorded.
    pub(crate) fn percentiles(&self) -> Option<Percentiles> {
        if self.0.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Percentiles {
            count: self.0.len(),
            p50: ms(self.0.value_at_quantile(0.50)),
            p90: ms(self.0.value_at_quantile(0.90)),
            p99: ms(self.0.value_at_quantile(0.99)),
            p999: ms(self.0.value_at_quantile(0.999)),
            max: ms(self.0.max()),
            mean: self.0.mean() / 1000.0,
        })
    }

    /// The cumulative distribution at about 200 points spaced evenly in log(latency).
    pub(crate) fn cdf(&self) -> Vec<CdfPoint> {
        if self.0.is_empty() {
            return Vec::new();
        }
        let total = self.0.len() as f64;
        let mut points = Vec::new();
        let mut seen = 0u64;
        let mut next_edge = 0.0f64;
        for v in self.0.iter_recorded() {
            seen += v.count_at_value();
            let value = v.value_iterated_to() as f64;
            let edge = value.ln();
            if edge >= next_edge || seen == self.0.len() {
                points.push(CdfPoint {
                    ms: value / 1000.0,
                    fraction: seen as f64 / total,
                });
                next_edge = edge + (MAX_US as f64).ln() / 200.0;
            }
        }
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_across_processes_and_reports_milliseconds() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for us in 1..=1000 {
            a.record_us(us * 10);
        }
        b.record_us(-5);
        b.record_us(i64::MAX);
        let mut total = Latency::default();
        total.merge(&a.buckets());
        total.merge(&b.buckets());
        let p = total.percentiles().unwrap();
        assert_eq!(p.count, 1002);
        assert!((p.p50 - 5.0).abs() < 0.05, "p50 {}", p.p50);
        assert!((p.max - 600_000.0).abs() < 600.0, "max {}", p.max);
        let cdf = total.cdf();
        assert!(
            cdf.windows(2)
                .all(|w| w[0].ms < w[1].ms && w[0].fraction <= w[1].fraction)
        );
        assert_eq!(cdf.last().unwrap().fraction, 1.0);
        assert!(Latency::default().percentiles().is_none());
    }
}
