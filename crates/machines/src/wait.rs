//! Waiting for a machine to reach a state.

use crate::error::{MachineError, Result};
use crate::Service;
use roost_lifecycle::{Right, Target, WAITABLE};
use roost_types::{Machine, MachineState, NumberRange};
use std::time::Duration;

/// Default `wait` timeout, in seconds; the range is [`NumberRange`]'s.
const DEFAULT_WAIT_SECS: u64 = 60;

impl Service {
    /// Waits until the machine is in `state` (and at `instance_id`, if given).
    pub async fn wait_machine(
        &self,
        app: &str,
        id: &str,
        state: MachineState,
        timeout_secs: Option<u64>,
        instance_id: Option<&str>,
    ) -> Result<Machine> {
        let inner = self.authorize(Right::Read, Target::Machine { app, id })?;
        if !WAITABLE.contains(&state) {
            let allowed: Vec<&str> = WAITABLE.iter().map(|s| s.as_str()).collect();
            return Err(MachineError::Invalid(format!(
                "cannot wait for state '{state}': allowed values are {}",
                allowed.join(", ")
            )));
        }
        let secs = NumberRange::WAIT_TIMEOUT_SECS
            .check_unsigned("timeout", timeout_secs.unwrap_or(DEFAULT_WAIT_SECS))
            .map_err(MachineError::Invalid)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut changes = inner.changes.subscribe();
        loop {
            changes.borrow_and_update();
            let record = inner.machine(app, id)?;
            let at_instance = instance_id.is_none_or(|want| want == record.instance_id);
            if record.state == state && at_instance {
                return inner.view(record, None);
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Err(MachineError::Timeout(format!(
                    "machine {id} did not reach state '{state}' within {secs}s (it is {})",
                    record.state
                )));
            }
        }
    }
}
