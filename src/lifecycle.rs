//! The instance's life: admitting connections, draining on SIGTERM, closing what is left.
//!
//! axum does not track upgraded WebSockets (axum #3003), so every socket task holds a
//! token of [`Lifecycle::tracker`] and watches [`Lifecycle::draining`] (send a `reconnect`
//! hint at a jittered moment) and [`Lifecycle::closing`] (close with 1001 now).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Lifecycle {
    draining: CancellationToken,
    closing: CancellationToken,
    tracker: TaskTracker,
    open: AtomicUsize,
    max_connections: usize,
}

/// Why a handshake is turned away before the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    Draining,
    Full,
}

impl Lifecycle {
    /// Admits at most `max_connections` at once (see `serve::SocketPlan` for how the app
    /// picks it).
    pub fn new(max_connections: usize) -> Self {
        Self {
            draining: CancellationToken::new(),
            closing: CancellationToken::new(),
            tracker: TaskTracker::new(),
            open: AtomicUsize::new(0),
            max_connections,
        }
    }

    /// Reserves a connection slot, released when the permit drops.
    pub fn admit(self: &Arc<Self>) -> Result<ConnectionPermit, AdmitError> {
        if self.is_draining() {
            return Err(AdmitError::Draining);
        }
        let limit = self.max_connections;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| AdmitError::Full)?;
        Ok(ConnectionPermit {
            lifecycle: self.clone(),
            _task: self.tracker.token(),
        })
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    pub fn start_draining(&self) {
        self.draining.cancel();
        self.tracker.close();
    }

    pub fn close_all(&self) {
        self.draining.cancel();
        self.closing.cancel();
        self.tracker.close();
    }

    /// Resolves once draining has started and every connection task has ended.
    pub async fn all_connections_ended(&self) {
        self.tracker.wait().await;
    }
}

/// A held connection slot and socket-task token.
pub struct ConnectionPermit {
    lifecycle: Arc<Lifecycle>,
    _task: tokio_util::task::task_tracker::TaskTrackerToken,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.lifecycle.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_releases_on_drop() {
        let l = Arc::new(Lifecycle::new(2));
        let a = l.admit().unwrap();
        let _b = l.admit().unwrap();
        assert_eq!(l.admit().err(), Some(AdmitError::Full));
        drop(a);
        let _c = l.admit().unwrap();
        assert_eq!(l.open_connections(), 2);
        l.start_draining();
        assert_eq!(l.admit().err(), Some(AdmitError::Draining));
    }

    #[test]
    fn zero_admits_none() {
        let l = Arc::new(Lifecycle::new(0));
        assert_eq!(l.admit().err(), Some(AdmitError::Full));
    }
}
