//! The instance's background tasks: the Redis subscriber and its jobs, the reachability
//! prober, the rooms' delivery tasks, the JWKS refresher, and every periodic job (viewer
//! counts, the embedded broker's sweep, rate-limit pruning, CPU sampling, the cluster
//! topology watch). Each is started here and tracked, so shutdown cancels them all and waits
//! for them under a deadline ([`Background::stop`]) instead of dropping them half-way
//! through a Redis call. (Connection tasks are tracked by `lifecycle`.)

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// The handle every part that starts background work holds: cheap to clone.
#[derive(Clone, Default)]
pub struct Background {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Background {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` as a tracked task; it should end once [`Background::cancelled`]
    /// resolves (or on its own).
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Runs `step` every `period` in a tracked task until cancelled, the first at once. A
    /// step that overruns the period delays the next one instead of bunching them up;
    /// cancellation also stops a step that is still running (a Redis call during shutdown).
    pub fn every<F, Fut>(&self, period: Duration, mut step: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let cancel = self.cancel.clone();
        self.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = step() => {}
                }
            }
        });
    }

    /// Resolves once the background work is to stop.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Cancels on drop (an app built but never run, as in benchmarks), unless disarmed.
    pub fn drop_guard(&self) -> DropGuard {
        self.cancel.clone().drop_guard()
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    /// Cancels every task and waits for them, at most `grace`; returns how many were still
    /// running then.
    pub async fn stop(&self, grace: Duration) -> usize {
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn steps_every_period_from_the_start_until_cancelled() {
        let steps = Arc::new(AtomicUsize::new(0));
        let background = Background::new();
        let counted = steps.clone();
        background.every(Duration::from_secs(1), move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 3, "at 0 s, 1 s and 2 s");
        assert_eq!(background.stop(Duration::from_secs(1)).await, 0, "it ended");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 3, "nothing after the stop");
    }

    /// A task that does not end by itself is waited for only as long as the grace.
    #[tokio::test(start_paused = true)]
    async fn stop_waits_for_tasks_at_most_the_grace() {
        let background = Background::new();
        let watching = background.clone();
        background.spawn(async move { watching.cancelled().await });
        background.spawn(std::future::pending::<()>());
        assert_eq!(background.running(), 2);
        assert_eq!(
            background.stop(Duration::from_secs(2)).await,
            1,
            "the stuck one"
        );
    }
}
