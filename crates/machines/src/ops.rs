//! Machine operations on the durable engine.
//!
//! Every lifecycle change (create, start, stop, restart, update, destroy and
//! the handling of a main process that exited on its own) is a
//! [`MachinePlan`] from the lifecycle model, run by `roost-engine`: the plan
//! is recorded with the machine's transitional state before the first step,
//! the next step's index after each one, and the settled state, its event
//! and the end of the operation in one last transaction. This module is the
//! machine's side of that: [`MachineOp`] runs each [`Step`] through the host
//! agent and keeps the record the store writes with the operation.

use crate::error::{MachineError, Result};
use crate::Inner;
use roost_engine::{Logged, OpId, OperationLog, Subject};
use roost_host::{GuestFs, GuestOp, RootfsUse, StopSpec};
use roost_lifecycle::{MachinePlan, MachineRecord, Operation, Step, StepName};
use roost_store::{OperationWrite, Store, StoreError};
use roost_types::{MachineEvent, MachineState};
use std::sync::Arc;
use std::time::Duration;

pub fn event(
    kind: &str,
    status: &str,
    source: &str,
    request: Option<serde_json::Value>,
) -> MachineEvent {
    MachineEvent {
        id: crate::ids::instance_id(),
        kind: kind.to_string(),
        status: status.to_string(),
        source: source.to_string(),
        timestamp: chrono::Utc::now().timestamp_millis(),
        request,
    }
}

/// One machine operation as the engine drives it: the machine's record
/// and the event the store writes with it at the operation's start or end.
pub(crate) struct MachineOp<'a> {
    inner: &'a Arc<Inner>,
    record: MachineRecord,
    event: Option<MachineEvent>,
    /// The machine is new: the operation's start inserts it.
    new: bool,
}

impl Subject for MachineOp<'_> {
    type Plan = MachinePlan;
    type Error = MachineError;

    fn id(&self) -> &str {
        &self.record.id
    }

    fn begin(&mut self, plan: &MachinePlan) {
        let machine = &mut self.record;
        machine.state = plan.first_state();
        machine.updated_at = crate::now_rfc3339();
        self.event = Some(event(
            plan.kind.name(),
            machine.state.as_str(),
            plan.source.as_str(),
            None,
        ));
    }

    async fn enter(&mut self, plan: &MachinePlan, step: Step) -> Result<()> {
        let state = plan.state_during(step);
        if self.record.state != state {
            self.record.state = state;
            self.inner.store.update_machine(&self.record, None)?;
            self.inner.notify_change();
        }
        Ok(())
    }

    async fn run(&mut self, plan: &MachinePlan, step: Step) -> Result<()> {
        self.inner.run_step(step, &mut self.record, plan).await
    }

    fn settle(&mut self, plan: &MachinePlan) {
        self.record.state = plan.settle;
        self.record.updated_at = crate::now_rfc3339();
        if plan.settle != MachineState::Started {
            self.record.init_pid = None;
        }
        self.event = Some(event(
            plan.kind.name(),
            plan.settle.as_str(),
            plan.source.as_str(),
            None,
        ));
    }

    fn fail(&mut self, plan: &MachinePlan, step: Step, error: &MachineError) {
        self.record.state = MachineState::Failed;
        self.record.init_pid = None;
        self.record.updated_at = crate::now_rfc3339();
        self.event = Some(event(
            plan.kind.name(),
            "failed",
            plan.source.as_str(),
            Some(serde_json::json!({"error": error.to_string(), "step": step.name()})),
        ));
    }
}

impl OperationLog<MachineOp<'_>> for Store {
    type Error = StoreError;

    fn begin(&self, op: &MachineOp<'_>, plan: &MachinePlan) -> Result<OpId, StoreError> {
        let record = &op.record;
        let write = match (&op.event, op.new) {
            (Some(event), true) => OperationWrite::NewMachine { record, event },
            (event, _) => OperationWrite::Machine {
                record,
                event: event.as_ref(),
            },
        };
        let id = log_start(self, write, plan)?;
        op.inner.notify_change();
        Ok(id)
    }

    fn advance(&self, op: OpId, next_step: usize) -> Result<(), StoreError> {
        log_step(self, op, next_step)
    }

    fn finish(&self, op_id: OpId, op: &MachineOp<'_>) -> Result<(), StoreError> {
        let write = OperationWrite::Machine {
            record: &op.record,
            event: op.event.as_ref(),
        };
        self.finish_operation(op_id, write)
    }
}

/// Records the start of `plan` with its subject's `write`: the store side
/// of every subject's [`OperationLog::begin`].
pub(crate) fn log_start<P: Operation>(
    store: &Store,
    write: OperationWrite<'_>,
    plan: &P,
) -> Result<OpId, StoreError> {
    let params = serde_json::to_value(plan)?;
    Ok(store.begin_operation(write, plan.kind(), &params)?.id)
}

/// The store side of every subject's [`OperationLog::advance`].
pub(crate) fn log_step(store: &Store, op: OpId, next_step: usize) -> Result<(), StoreError> {
    store.set_operation_step(op, next_step as u32)
}

impl Inner {
    /// Records `plan` for `record` and runs it to the end. The caller holds
    /// the machine's lock.
    pub(crate) async fn run_new_op(
        self: &Arc<Self>,
        record: MachineRecord,
        plan: MachinePlan,
    ) -> Result<MachineRecord> {
        self.drive(record, false, &plan, None).await
    }

    /// Inserts the new machine `record` with its create `plan` and runs
    /// it. The caller holds the machine's lock.
    pub(crate) async fn run_create_op(
        self: &Arc<Self>,
        record: MachineRecord,
        plan: MachinePlan,
    ) -> Result<MachineRecord> {
        self.drive(record, true, &plan, None).await
    }

    /// Resumes an operation a previous process left unfinished. The caller
    /// holds the machine's lock.
    pub(crate) async fn resume_op(
        self: &Arc<Self>,
        record: MachineRecord,
        plan: MachinePlan,
        logged: Logged,
    ) -> Result<()> {
        self.drive(record, false, &plan, Some(logged))
            .await
            .map(|_| ())
    }

    /// Runs `plan` on the engine (recording it first unless `logged`), then
    /// does what follows a settled machine: its lease goes with it, a
    /// started one's exit is watched.
    async fn drive(
        self: &Arc<Self>,
        record: MachineRecord,
        new: bool,
        plan: &MachinePlan,
        logged: Option<Logged>,
    ) -> Result<MachineRecord> {
        let mut op = MachineOp {
            inner: self,
            record,
            event: None,
            new,
        };
        let result = match logged {
            None => self.engine.start(&self.store, &mut op, plan).await,
            Some(logged) => self.engine.run(&self.store, &mut op, plan, logged).await,
        };
        self.notify_change();
        result?;
        let record = op.record;
        if plan.settle == MachineState::Destroyed {
            self.store.delete_lease(&record.id)?;
        }
        if let (MachineState::Started, Some(pid)) = (plan.settle, record.init_pid) {
            self.watch_exit(&record.id, &record.instance_id, pid);
        }
        Ok(record)
    }

    async fn run_step(
        &self,
        step: Step,
        record: &mut MachineRecord,
        plan: &MachinePlan,
    ) -> Result<()> {
        let id = record.id.clone();
        let size_gb = crate::spec::rootfs_size_gb(&record.config);
        match step {
            Step::Prepare => self.prepare(record).await,
            Step::ConnectNetwork => self.connect_network(record).await,
            Step::ResetRootfs => Ok(self.host.reset_rootfs(&id, size_gb).await?),
            Step::MountRootfs => {
                self.host
                    .mount_rootfs(&id, size_gb, RootfsUse::Machine)
                    .await?;
                Ok(())
            }
            Step::WriteFiles => {
                for file in &record.config.files {
                    let content = file
                        .raw_value
                        .as_deref()
                        .map(crate::spec::decode_base64)
                        .transpose()
                        .map_err(|e| MachineError::Invalid(format!("{}: {e}", file.guest_path)))?
                        .unwrap_or_default();
                    let write = GuestOp::Write {
                        content,
                        mode: file.mode.unwrap_or(0o644),
                    };
                    self.host
                        .guest_file(GuestFs::Rootfs(id.clone()), &file.guest_path, write)
                        .await?;
                }
                Ok(())
            }
            Step::RefreshEnv => self.refresh_env(record).await,
            Step::Run => {
                let net = self.machine_net(record)?;
                let runtime = self.runtime_for(record)?;
                record.init_pid = Some(self.host.run(&id, runtime, net.as_ref()).await?);
                Ok(())
            }
            Step::SignalStop => {
                let stop = StopSpec {
                    pid: record.init_pid,
                    signal: plan.stop_signal,
                    timeout: Duration::from_millis(
                        plan.stop_timeout_ms
                            .unwrap_or(crate::DEFAULT_STOP_TIMEOUT_MS),
                    ),
                };
                let runtime = self.runtime_for(record)?;
                Ok(self.host.stop(&id, runtime, &stop).await?)
            }
            Step::DeleteContainer => {
                let runtime = self.runtime_for(record)?;
                Ok(self.host.delete_container(&id, runtime).await?)
            }
            Step::AttachVolumes => self.attach_volumes(record).await,
            Step::DetachVolumes => self.detach_volumes(&id).await,
            Step::UnmountRootfs => Ok(self.host.unmount_rootfs(&id).await?),
            Step::SwitchRuntime => {
                let runtime = plan.runtime.clone().ok_or_else(|| {
                    MachineError::Internal(format!(
                        "machine {id}: the plan names no runtime to switch to"
                    ))
                })?;
                record.runtime = runtime;
                Ok(self.store.update_machine(record, None)?)
            }
            Step::DisconnectNetwork => self.disconnect_network(&id).await,
            Step::RemoveFiles => Ok(self.host.remove_machine(&id).await?),
        }
    }
}
