//! The one shape of every periodic background job (viewer-count pushes and reports, the
//! embedded broker's sweep, rate-limit pruning, CPU sampling, the cluster topology watch):
//! a step every `period`, the first at once, until the app's background token is cancelled.

use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Runs `step` every `period` in a task of its own until `cancel`. A step that overruns the
/// period delays the next one instead of bunching them up; cancellation also stops a step
/// that is still running (a Redis call during shutdown).
pub(crate) fn spawn_every<F, Fut>(period: Duration, cancel: CancellationToken, mut step: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn steps_every_period_from_the_start_until_cancelled() {
        let steps = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let counted = steps.clone();
        spawn_every(Duration::from_secs(1), cancel.clone(), move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 3, "at 0 s, 1 s and 2 s");
        cancel.cancel();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 3, "nothing after cancel");
    }
}
