//! Health-check results and the change counter: what the edge proxy needs
//! from the service layer besides the ordinary lifecycle calls.
//!
//! Check results are kept in memory, not in the store: they are facts about
//! the running process that the proxy re-establishes within one check
//! interval after a restart, and writing them to SQLite every few seconds
//! per machine would contend with lifecycle operations for nothing.

use crate::error::Result;
use crate::Service;
use roost_lifecycle::{Right, Target};
use roost_types::{CheckStatus, MachineState};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// Latest check results by machine id.
#[derive(Default)]
pub(crate) struct CheckResults {
    by_machine: Mutex<HashMap<String, Vec<CheckStatus>>>,
}

impl CheckResults {
    pub(crate) fn get(&self, id: &str) -> Vec<CheckStatus> {
        let map = self.by_machine.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned().unwrap_or_default()
    }
}

impl Service {
    /// A counter bumped by every machine state change (and cordon or
    /// metadata change). A front end caching machine lists (the proxy)
    /// re-reads them when it moves; reading it costs no store access.
    pub fn change_count(&self) -> Result<u64> {
        Ok(*self.authorize(Right::Read, Target::Host)?.changes.borrow())
    }

    /// Resolves once [`Service::change_count`] differs from `seen` (at
    /// once if it does already) or the service is gone, so a front end
    /// sleeps until machines change instead of polling the counter. The
    /// future holds no reference to the service.
    pub fn changed_since(&self, seen: u64) -> Result<impl Future<Output = ()> + Send + 'static> {
        let mut changes = self
            .authorize(Right::Read, Target::Host)?
            .changes
            .subscribe();
        Ok(async move {
            // An error is the service gone: nothing will change any more.
            let _ = changes.wait_for(|count| *count != seen).await;
        })
    }

    /// Records the latest results of a machine's health checks, shown in
    /// its `checks`. An empty list clears them (the machine stopped).
    /// Results for a machine that is not started are dropped: they would
    /// describe a process that no longer exists.
    pub fn set_checks(&self, app: &str, id: &str, checks: Vec<CheckStatus>) -> Result<()> {
        let inner = self.authorize(Right::Lifecycle, Target::Machine { app, id })?;
        let record = inner.machine(app, id)?;
        let mut map = inner
            .checks
            .by_machine
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if checks.is_empty() || record.state != MachineState::Started {
            map.remove(id);
        } else {
            map.insert(id.to_string(), checks);
        }
        Ok(())
    }
}
