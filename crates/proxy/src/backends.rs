//! The proxy's one window onto the orchestrator.
//!
//! The proxy decides *where* a request goes; every lifecycle change it
//! causes (autostart, autostop) and every fact it routes on (state,
//! address, services, cordon) goes through this trait, which roost
//! implements over its `Machines` service layer. So the proxy holds no
//! lifecycle logic of its own, and its tests can stand in loopback servers
//! for machines.

use roost_lifecycle::MachineRecord;
use roost_types::CheckStatus;
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so [`Backends`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the orchestrator refused or failed a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The app or machine does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The machine's state or lease forbids the call right now.
    #[error("{0}")]
    Conflict(String),
    /// Anything else; the message is logged and shown in 502/503 bodies.
    #[error("{0}")]
    Failed(String),
}

/// What the proxy needs from the orchestrator.
///
/// Machines are the orchestrator's records, not the API's view: routing
/// needs no events, and the proxy is what reports check results.
/// `MachineRecord::private_ip` is the address the proxy dials (with the
/// service's `internal_port`); an empty or unparsable one makes the
/// machine unroutable.
pub trait Backends: Send + Sync + 'static {
    /// A counter that moves whenever a machine changes (state, config,
    /// cordon). The proxy caches machine lists and re-reads an app when
    /// this moves, so it must be cheap.
    fn change_count(&self) -> u64;

    /// Resolves once [`Backends::change_count`] differs from `seen` (at
    /// once if it does already), or when the orchestrator is gone. The
    /// supervisor sleeps on it, so a fleet where nothing changes wakes
    /// nothing; the future is `'static` so that waiting on it keeps
    /// neither the proxy nor the orchestrator alive.
    fn changed(&self, seen: u64) -> BoxFuture<'static, ()>;

    /// Names of all apps (autostop and health checks sweep them).
    fn apps(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>>;

    /// The app's machines that are not destroyed.
    fn machines<'a>(
        &'a self,
        app: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MachineRecord>, BackendError>>;

    /// Starts a machine and returns once it is `started` (its program may
    /// not listen yet; the proxy waits for the port itself).
    fn start<'a>(&'a self, app: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Stops a machine (autostop) and returns once it is stopped.
    fn stop<'a>(&'a self, app: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Records the latest health-check results of a started machine.
    fn report_checks(&self, app: &str, id: &str, checks: Vec<CheckStatus>);
}
