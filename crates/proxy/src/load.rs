//! Per-machine load: the in-flight counter every routing decision, queue
//! and autostop reads.
//!
//! A request (or upgraded connection, raw TCP connection or UDP flow)
//! holds an [`InFlight`] guard from the moment it is routed until its
//! response body ends, its connection closes or its flow ends; dropping the guard is the only way the
//! count goes down, so a client that disconnects mid-stream (hyper drops
//! the body) cannot leak load.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// Requests waiting for capacity in one app, woken when load drops or a
/// machine starts.
#[derive(Default)]
pub(crate) struct Waiters {
    count: AtomicUsize,
    notify: Notify,
}

impl Waiters {
    /// Wakes every waiter; free when nobody waits (the common case), which
    /// keeps the hot path to one atomic load.
    pub(crate) fn wake(&self) {
        if self.count.load(SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Waits for a wake-up or `until`, whichever comes first.
    pub(crate) async fn wait(&self, until: tokio::time::Instant) {
        self.count.fetch_add(1, SeqCst);
        let notified = self.notify.notified();
        let _ = tokio::time::timeout_at(until, notified).await;
        self.count.fetch_sub(1, SeqCst);
    }
}

/// Health of a machine as far as routing cares: only a failing service
/// check excludes it (a machine without results yet gets traffic, as a
/// just-started one must).
pub(crate) const HEALTH_UNKNOWN: u8 = 0;
pub(crate) const HEALTH_PASSING: u8 = 1;
pub(crate) const HEALTH_CRITICAL: u8 = 2;

/// The proxy's live view of one machine.
pub(crate) struct Slot {
    in_flight: AtomicUsize,
    /// Milliseconds since the proxy's epoch when the machine last had no
    /// traffic left or was first seen started.
    last_active_ms: AtomicU64,
    /// Set while autostop stops the machine: routing skips it.
    draining: AtomicBool,
    pub(crate) health: AtomicU8,
    /// Epoch milliseconds when the proxy first saw the machine started in
    /// its current run; 0 while it is not started.
    started_seen_ms: AtomicU64,
    waiters: Arc<Waiters>,
    epoch: Instant,
}

impl Slot {
    pub(crate) fn new(waiters: Arc<Waiters>, epoch: Instant) -> Slot {
        let slot = Slot {
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            health: AtomicU8::new(HEALTH_UNKNOWN),
            started_seen_ms: AtomicU64::new(0),
            waiters,
            epoch,
        };
        slot.touch();
        slot
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 keeps meaning "never" in `started_seen_ms`.
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn load(&self) -> usize {
        self.in_flight.load(SeqCst)
    }

    pub(crate) fn touch(&self) {
        self.last_active_ms.store(self.now_ms(), SeqCst);
    }

    /// How long the machine has had nothing in flight (zero while busy).
    pub(crate) fn idle_for(&self) -> std::time::Duration {
        if self.load() > 0 {
            return std::time::Duration::ZERO;
        }
        let last = self.last_active_ms.load(SeqCst);
        std::time::Duration::from_millis(self.now_ms().saturating_sub(last))
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    pub(crate) fn is_critical(&self) -> bool {
        self.health.load(SeqCst) == HEALTH_CRITICAL
    }

    /// Tracks started/not-started transitions: a machine that just became
    /// started counts as active now (autostop's idle clock starts here, and
    /// check grace periods too). Returns when it was first seen started.
    pub(crate) fn observe_started(&self, started: bool) -> Option<u64> {
        if !started {
            if self.started_seen_ms.swap(0, SeqCst) != 0 {
                self.health.store(HEALTH_UNKNOWN, SeqCst);
            }
            return None;
        }
        let now = self.now_ms();
        match self
            .started_seen_ms
            .compare_exchange(0, now, SeqCst, SeqCst)
        {
            Ok(_) => {
                self.touch();
                Some(now)
            }
            Err(seen) => Some(seen),
        }
    }

    pub(crate) fn started_age(&self) -> Option<std::time::Duration> {
        match self.started_seen_ms.load(SeqCst) {
            0 => None,
            seen => Some(std::time::Duration::from_millis(
                self.now_ms().saturating_sub(seen),
            )),
        }
    }

    /// Takes one unit of load if the machine has fewer than `limit` in
    /// flight and is not draining.
    pub(crate) fn try_acquire(self: &Arc<Self>, limit: usize) -> Option<InFlight> {
        let before = self.in_flight.fetch_add(1, SeqCst);
        // Checked after the increment: autostop sets `draining` before it
        // reads the count, so one of the two always sees the other.
        if before >= limit || self.is_draining() {
            self.release();
            return None;
        }
        Some(InFlight { slot: self.clone() })
    }

    fn release(&self) {
        if self.in_flight.fetch_sub(1, SeqCst) == 1 {
            self.touch();
        }
        self.waiters.wake();
    }

    /// Marks the machine draining if nothing is in flight; autostop then
    /// owns it until [`Slot::end_drain`].
    pub(crate) fn try_drain(&self) -> bool {
        if self.draining.swap(true, SeqCst) {
            return false;
        }
        if self.load() > 0 {
            self.draining.store(false, SeqCst);
            return false;
        }
        true
    }

    pub(crate) fn end_drain(&self) {
        self.draining.store(false, SeqCst);
        self.touch();
        self.waiters.wake();
    }
}

/// One unit of a machine's load, released on drop.
pub struct InFlight {
    slot: Arc<Slot>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_draining_and_release() {
        let slot = Arc::new(Slot::new(Arc::default(), Instant::now()));
        let a = slot.try_acquire(2).expect("first");
        let b = slot.try_acquire(2).expect("second");
        assert!(slot.try_acquire(2).is_none(), "third is over the limit");
        assert_eq!(slot.load(), 2);
        assert!(!slot.try_drain(), "busy machines are not drained");
        drop(a);
        drop(b);
        assert_eq!(slot.load(), 0);
        assert!(slot.try_drain());
        assert!(
            slot.try_acquire(10).is_none(),
            "draining machines get nothing"
        );
        assert_eq!(slot.load(), 0);
        slot.end_drain();
        assert!(slot.try_acquire(1).is_some());
        assert_eq!(slot.load(), 0);
    }
}
