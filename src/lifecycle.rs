//! The instance's life: admitting connections (and whether it is full), draining on
//! SIGTERM, closing what is left.
//!
//! axum does not track upgraded WebSockets (axum #3003), so every socket task holds a
//! token of [`Lifecycle::tracker`] and watches [`Lifecycle::draining`] (send a `reconnect`
//! hint at a jittered moment) and [`Lifecycle::closing`] (close with 1001 now).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Lifecycle {
    draining: CancellationToken,
    closing: CancellationToken,
    tracker: TaskTracker,
    open: AtomicUsize,
    max_connections: usize,
    /// At the cap, and not yet back below [`Lifecycle::refill_below`] since.
    full: AtomicBool,
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
            full: AtomicBool::new(false),
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
            .map_err(|_| {
                self.full.store(true, Ordering::Release);
                AdmitError::Full
            })?;
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

    /// Whether new connections should go elsewhere: at the cap, and since then not yet back
    /// at or below [`Lifecycle::refill_below`] (hysteresis: an instance at its cap would
    /// otherwise flap in and out of its Service with each connection that ends).
    pub fn is_full(&self) -> bool {
        let open = self.open_connections();
        if open >= self.max_connections {
            self.full.store(true, Ordering::Release);
        } else if open <= self.refill_below() {
            self.full.store(false, Ordering::Release);
        }
        self.full.load(Ordering::Acquire)
    }

    /// A full instance takes connections again once this few are open: 5 % below the cap
    /// (at least one).
    pub fn refill_below(&self) -> usize {
        let margin = (self.max_connections / 20).max(1);
        self.max_connections.saturating_sub(margin)
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
    fn full_at_the_cap_until_five_percent_below_it() {
        let l = Arc::new(Lifecycle::new(40));
        let mut permits: Vec<_> = (0..39).map(|_| l.admit().unwrap()).collect();
        assert!(!l.is_full());
        permits.push(l.admit().unwrap());
        assert!(l.is_full(), "at the cap");
        permits.pop();
        assert!(l.is_full(), "39 of 40: still full");
        permits.pop();
        assert_eq!(l.refill_below(), 38);
        assert!(!l.is_full(), "38 of 40: back");
        permits.pop();
        assert!(!l.is_full());
        // A refused handshake marks it full even if no one asked in between.
        let small = Arc::new(Lifecycle::new(1));
        let _one = small.admit().unwrap();
        assert_eq!(small.admit().err(), Some(AdmitError::Full));
        assert!(small.is_full());
    }

    #[test]
    fn zero_admits_none() {
        let l = Arc::new(Lifecycle::new(0));
        assert_eq!(l.admit().err(), Some(AdmitError::Full));
    }
}
