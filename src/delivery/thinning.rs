//! Thinning: how many user comments per second a viewer is sent, and which ones.
//!
//! A viewer's budget (`DANMAKU_VIEWER_MAX_RATE`, or less by `max_rate=`) is rounded down
//! to a [`Tier`], one of a fixed ladder of rates ([`LADDER`]), so that viewers of a stream
//! share a few tiers and each tier's frame is chosen and encoded once per pass, not per
//! socket. A room keeps one [`Sampler`] per tier in use: it earns the tier's rate in credit
//! as time goes by (up to [`MAX_CREDIT`]'s worth) and spends it on the thinnable comments
//! of each pass, picked evenly over the pass with a random start, so every comment of a
//! pass has the same chance and a busy second is sampled across, not cut after its first
//! few.
//!
//! Only user comments by non-moderators are thinnable: system comments, moderators'
//! comments, a viewer's own comments and `deleted` frames always go out (see
//! [`super::batch`]).

use std::sync::Mutex;

use rand::Rng;
use tokio::time::Instant;

use super::policy::{LADDER, MAX_CREDIT};

/// How many user comments per second a viewer is sent at most: a rung of the ladder,
/// system comments only, or everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tier(u8);

impl Tier {
    /// No user comments but the never-thinned ones: the slowest consumer's lane.
    pub const PRIORITY: Self = Self(0);
    /// Every comment.
    pub const UNLIMITED: Self = Self(LADDER.len() as u8 + 1);
    /// How many tiers there are.
    pub const COUNT: usize = LADDER.len() + 2;

    /// At most `rate` user comments a second (rounded down to the ladder; 0 is
    /// [`Self::PRIORITY`]).
    pub fn at_most(rate: u32) -> Self {
        let rung = LADDER.iter().take_while(|&&r| u32::from(r) <= rate).count();
        Self(rung as u8)
    }

    /// A viewer's tier: the server's budget (`0`: none), lowered by what the client asked
    /// for (`max_rate=`).
    pub fn for_viewer(server: u32, asked: Option<u32>) -> Self {
        match (server, asked) {
            (0, None) => Self::UNLIMITED,
            (0, Some(asked)) => Self::at_most(asked),
            (server, asked) => Self::at_most(asked.map_or(server, |a| a.min(server))),
        }
    }

    /// User comments per second; `None` for every one.
    pub fn rate(self) -> Option<f64> {
        if self == Self::UNLIMITED {
            return None;
        }
        Some(match self.0 {
            0 => 0.0,
            rung => f64::from(LADDER[usize::from(rung) - 1]),
        })
    }

    pub(super) fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A tier's share of a room's user comments: credit earned at the tier's rate, spent on
/// the comments of each pass.
#[derive(Debug)]
pub(super) struct Sampler {
    credit: f64,
    last: Instant,
}

impl Sampler {
    /// A sampler with a full second's credit: a tier is made when its first thinnable
    /// comment comes, after a quiet stretch in which its viewers spent nothing, so the
    /// first comments of a burst go out whole, as they would to a tier that had waited.
    fn new(rate: f64) -> Self {
        Self {
            credit: Self::burst(rate),
            last: Instant::now(),
        }
    }

    /// Most credit kept: [`MAX_CREDIT`]'s worth (at least one comment).
    fn burst(rate: f64) -> f64 {
        (rate * MAX_CREDIT.as_secs_f64()).max(1.0)
    }

    /// Which of `n` thinnable comments to keep (`true` at their positions): as many as the
    /// credit allows, spread evenly over the `n` with a random start.
    pub(super) fn pick(&mut self, rate: f64, n: usize) -> Vec<bool> {
        let now = Instant::now();
        let earned = rate * now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.credit = (self.credit + earned).min(Self::burst(rate));
        let k = (self.credit.floor() as usize).min(n);
        self.credit -= k as f64;
        let mut keep = vec![false; n];
        if k == n {
            keep.fill(true);
        } else if k > 0 {
            // Systematic sampling: one pick in each of k equal strides, at the same random
            // offset in each.
            let start: f64 = rand::rng().random();
            for j in 0..k {
                let at = ((j as f64 + start) * n as f64 / k as f64) as usize;
                keep[at.min(n - 1)] = true;
            }
        }
        keep
    }
}

/// A room's samplers, one per tier in use, made on first use.
#[derive(Debug, Default)]
pub struct Samplers(Mutex<Vec<Option<Sampler>>>);

impl Samplers {
    /// Which of `n` thinnable comments `tier` keeps this pass.
    pub fn pick(&self, tier: Tier, n: usize) -> Vec<bool> {
        let Some(rate) = tier.rate() else {
            return vec![true; n];
        };
        if rate == 0.0 {
            return vec![false; n];
        }
        let mut samplers = self.0.lock().expect("not poisoned");
        if samplers.len() < Tier::COUNT {
            samplers.resize_with(Tier::COUNT, || None);
        }
        samplers[tier.index()]
            .get_or_insert_with(|| Sampler::new(rate))
            .pick(rate, n)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn budgets_round_down_to_the_ladder() {
        assert_eq!(Tier::at_most(0), Tier::PRIORITY);
        assert_eq!(Tier::at_most(30).rate(), Some(30.0));
        assert_eq!(Tier::at_most(35).rate(), Some(30.0));
        assert_eq!(Tier::at_most(7).rate(), Some(7.0));
        assert_eq!(Tier::at_most(5000).rate(), Some(1000.0));
        assert_eq!(Tier::for_viewer(0, None), Tier::UNLIMITED);
        assert_eq!(Tier::for_viewer(0, Some(5)).rate(), Some(5.0));
        assert_eq!(Tier::for_viewer(30, None).rate(), Some(30.0));
        assert_eq!(Tier::for_viewer(30, Some(100)).rate(), Some(30.0));
        assert_eq!(Tier::for_viewer(30, Some(5)).rate(), Some(5.0));
        assert!(Tier::PRIORITY < Tier::at_most(1) && Tier::at_most(1000) < Tier::UNLIMITED);
        assert_eq!(Tier::UNLIMITED.rate(), None);
    }

    /// 200 comments a second in passes of 8 (a hot room's 40 ms): a budget of 30 keeps
    /// about 30 a second, spread over the positions of a pass rather than the first ones.
    #[tokio::test(start_paused = true)]
    async fn a_sampler_keeps_its_rate_spread_over_each_pass() {
        let mut sampler = Sampler::new(30.0);
        let mut kept = 0;
        let mut at = [0usize; 8];
        for _ in 0..250 {
            tokio::time::advance(Duration::from_millis(40)).await;
            for (i, k) in sampler.pick(30.0, 8).into_iter().enumerate() {
                kept += usize::from(k);
                at[i] += usize::from(k);
            }
        }
        // 10 s: 300 earned, plus the second's worth it started with.
        assert!((300..=330).contains(&kept), "{kept}");
        assert!(
            at.iter().all(|&n| n > 15),
            "every position is picked: {at:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_sampler_under_its_budget_keeps_everything() {
        let mut sampler = Sampler::new(30.0);
        for _ in 0..100 {
            tokio::time::advance(Duration::from_millis(50)).await;
            assert_eq!(sampler.pick(30.0, 1), [true], "20 a second fit 30");
        }
    }
}
