//! What the egress proxy decided and carried: a bounded audit log per app
//! and counters per machine, in memory (they start empty with the
//! process). The proxy writes; whoever shows them (roost's API) reads.

use roost_types::{EgressLog, EgressLogEntry, MachineEgress};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Decisions kept per app; the oldest go first.
pub const LOG_ENTRIES_PER_APP: usize = 1000;

/// The audit log and counters. Shared (`Arc`) between the proxy and its
/// readers.
#[derive(Debug, Default)]
pub struct Ledger {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    apps: HashMap<String, VecDeque<Arc<Record>>>,
    machines: HashMap<String, Arc<MachineMeter>>,
}

/// One decision, whose byte counts grow while its connection lives.
#[derive(Debug)]
pub(crate) struct Record {
    time: String,
    machine_id: String,
    host: String,
    port: u16,
    method: String,
    allowed: bool,
    rule: String,
    tokenizer: bool,
    sent: AtomicU64,
    received: AtomicU64,
    open: AtomicBool,
    error: OnceLock<String>,
}

/// What a decision is about, for [`Ledger::record`].
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub machine_id: String,
    pub host: String,
    pub port: u16,
    pub method: String,
    pub allowed: bool,
    pub rule: String,
    pub tokenizer: bool,
}

/// One machine's counters.
#[derive(Debug, Default)]
pub(crate) struct MachineMeter {
    sent: AtomicU64,
    received: AtomicU64,
    open_connections: AtomicU64,
    /// Connections past the limit, open until they have been told so.
    turned_away: AtomicU64,
    allowed: AtomicU64,
    refused: AtomicU64,
}

impl Ledger {
    /// The app's decisions, oldest first.
    pub fn log(&self, app: &str) -> EgressLog {
        let state = self.lock();
        let entries = state
            .apps
            .get(app)
            .map(|records| records.iter().map(|r| r.entry()).collect())
            .unwrap_or_default();
        EgressLog { entries }
    }

    /// The machine's counters; `None` when it never used egress since
    /// roost started.
    pub fn machine(&self, machine_id: &str) -> Option<MachineEgress> {
        let meter = self.lock().machines.get(machine_id).cloned()?;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Some(MachineEgress {
            bytes_sent: load(&meter.sent),
            bytes_received: load(&meter.received),
            open_connections: load(&meter.open_connections),
            allowed: load(&meter.allowed),
            refused: load(&meter.refused),
        })
    }

    /// Drops the app's log (the app is gone).
    pub fn forget_app(&self, app: &str) {
        self.lock().apps.remove(app);
    }

    /// Drops the machine's counters (the machine is gone).
    pub fn forget_machine(&self, machine_id: &str) {
        self.lock().machines.remove(machine_id);
    }

    /// The machine's counters, created on first use.
    pub(crate) fn meter(&self, machine_id: &str) -> Arc<MachineMeter> {
        self.lock()
            .machines
            .entry(machine_id.to_string())
            .or_default()
            .clone()
    }

    /// Appends a decision to the app's log (dropping the oldest past
    /// [`LOG_ENTRIES_PER_APP`]) and counts it for the machine.
    pub(crate) fn record(&self, app: &str, decision: Decision) -> Arc<Record> {
        let record = Arc::new(Record {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            open: AtomicBool::new(decision.allowed),
            machine_id: decision.machine_id,
            host: decision.host,
            port: decision.port,
            method: decision.method,
            allowed: decision.allowed,
            rule: decision.rule,
            tokenizer: decision.tokenizer,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            error: OnceLock::new(),
        });
        let mut state = self.lock();
        let meter = state.machines.entry(record.machine_id.clone()).or_default();
        let count = if record.allowed {
            &meter.allowed
        } else {
            &meter.refused
        };
        count.fetch_add(1, Ordering::Relaxed);
        let log = state.apps.entry(app.to_string()).or_default();
        if log.len() >= LOG_ENTRIES_PER_APP {
            log.pop_front();
        }
        log.push_back(record.clone());
        record
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Record {
    fn entry(&self) -> EgressLogEntry {
        EgressLogEntry {
            time: self.time.clone(),
            machine_id: self.machine_id.clone(),
            host: self.host.clone(),
            port: self.port,
            method: self.method.clone(),
            decision: if self.allowed { "allowed" } else { "refused" }.into(),
            rule: self.rule.clone(),
            tokenizer: self.tokenizer,
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            error: self.error.get().cloned(),
        }
    }

    /// Why the allowed request still failed; the first reason stays.
    pub(crate) fn failed(&self, error: impl Into<String>) {
        let _ = self.error.set(error.into());
        self.open.store(false, Ordering::Relaxed);
    }
}

/// Where one connection's bytes are counted: its decision and its machine.
/// Dropping it marks the decision's connection closed.
#[derive(Debug)]
pub(crate) struct Tally {
    record: Arc<Record>,
    meter: Arc<MachineMeter>,
}

impl Tally {
    pub(crate) fn new(record: Arc<Record>, meter: Arc<MachineMeter>) -> Tally {
        Tally { record, meter }
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.record.sent.fetch_add(bytes as u64, Ordering::Relaxed);
        self.meter.sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.record
            .received
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.meter
            .received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.record.open.store(false, Ordering::Relaxed);
    }
}

/// A client connection counted against its machine's limit while it lives.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    meter: Arc<MachineMeter>,
    kind: SlotKind,
}

#[derive(Debug, Clone, Copy)]
enum SlotKind {
    Open,
    TurnedAway,
}

impl MachineMeter {
    /// A slot, unless the machine already has `limit` connections open.
    pub(crate) fn try_open(self: &Arc<Self>, limit: usize) -> Option<ConnectionSlot> {
        self.try_take(SlotKind::Open, limit)
    }

    /// A slot for a connection past the limit while it is answered that it
    /// is, unless `limit` such answers are pending already: then the
    /// connection is closed at once, so that a machine opening connections
    /// in a loop holds at most twice its limit of the host's descriptors.
    pub(crate) fn try_turn_away(self: &Arc<Self>, limit: usize) -> Option<ConnectionSlot> {
        self.try_take(SlotKind::TurnedAway, limit)
    }

    fn counter(&self, kind: SlotKind) -> &AtomicU64 {
        match kind {
            SlotKind::Open => &self.open_connections,
            SlotKind::TurnedAway => &self.turned_away,
        }
    }

    fn try_take(self: &Arc<Self>, kind: SlotKind, limit: usize) -> Option<ConnectionSlot> {
        let counter = self.counter(kind);
        let before = counter.fetch_add(1, Ordering::AcqRel);
        if before >= limit as u64 {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot {
            meter: self.clone(),
            kind,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.meter.counter(self.kind).fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(machine: &str, allowed: bool) -> Decision {
        Decision {
            machine_id: machine.into(),
            host: "example.com".into(),
            port: 443,
            method: "CONNECT".into(),
            allowed,
            rule: "default allow".into(),
            tokenizer: false,
        }
    }

    #[test]
    fn logs_are_per_app_and_bounded() {
        let ledger = Ledger::default();
        for n in 0..LOG_ENTRIES_PER_APP + 5 {
            ledger.record("a", decision(&format!("m{n}"), true));
        }
        ledger.record("b", decision("mb", false));
        let log = ledger.log("a").entries;
        assert_eq!(log.len(), LOG_ENTRIES_PER_APP);
        assert_eq!(log[0].machine_id, "m5");
        assert_eq!(ledger.log("b").entries.len(), 1);
        assert_eq!(ledger.log("b").entries[0].decision, "refused");
        assert!(ledger.log("c").entries.is_empty());
        ledger.forget_app("a");
        assert!(ledger.log("a").entries.is_empty());
    }

    #[test]
    fn bytes_count_for_the_decision_and_the_machine() {
        let ledger = Ledger::default();
        let record = ledger.record("a", decision("m", true));
        let tally = Tally::new(record, ledger.meter("m"));
        tally.sent(10);
        tally.received(1000);
        let entry = &ledger.log("a").entries[0];
        assert_eq!(
            (entry.bytes_sent, entry.bytes_received, entry.open),
            (10, 1000, true)
        );
        drop(tally);
        assert!(!ledger.log("a").entries[0].open);
        ledger.record("a", decision("m", false));
        let counters = ledger.machine("m").unwrap();
        assert_eq!(
            (
                counters.bytes_sent,
                counters.bytes_received,
                counters.allowed,
                counters.refused
            ),
            (10, 1000, 1, 1)
        );
        assert!(ledger.machine("other").is_none());
    }

    #[test]
    fn connection_slots_stop_at_the_limit_and_come_back() {
        let meter = Arc::new(MachineMeter::default());
        let first = meter.try_open(2).unwrap();
        let _second = meter.try_open(2).unwrap();
        assert!(meter.try_open(2).is_none());
        drop(first);
        assert!(meter.try_open(2).is_some());
        // Past the limit, as many more may be turned away with an answer.
        let away = meter.try_turn_away(2).unwrap();
        let _away = meter.try_turn_away(2).unwrap();
        assert!(meter.try_turn_away(2).is_none());
        drop(away);
        assert!(meter.try_turn_away(2).is_some());
        assert_eq!(meter.open_connections.load(Ordering::Relaxed), 1);
    }
}
