//! Machine operations on the durable engine.
//!
//! Every lifecycle change (create, start, stop, restart, update, destroy and
//! the handling of a main process that exited on its own) is a
//! [`MachinePlan`] from the lifecycle model, run by `roost-engine`: the plan
//! is recorded with the machine's transitional state before the first step,
//! the next step's index after each one, and the settled state, its event
//! and the end of the operation in one last transaction. This module is the
//! machine's side of that: [`MachineOp`] runs each [`Step`] on the host and
//! keeps the record the store writes with the operation.

use crate::error::{MachineError, Result};
use crate::paths::MachinePaths;
use crate::Inner;
use roost_engine::{Logged, OpId, OperationLog, Subject};
use roost_lifecycle::{MachinePlan, MachineRecord, Operation, Step, StepName};
use roost_runtime::rootfs::OverlayUse;
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
        let paths = MachinePaths::new(&self.data_dir, &id);
        match step {
            Step::Prepare => self.prepare(record, &paths),
            Step::ConnectNetwork => self.connect_network(record).await,
            Step::ResetRootfs => {
                self.ensure_rootfs_disk(record, &paths)?;
                reset_dir_contents(&paths.upper)
                    .and_then(|()| reset_dir_contents(&paths.work))
                    .map_err(MachineError::from)
            }
            Step::MountRootfs => {
                if !roost_runtime::rootfs::is_mounted(&paths.rootfs) {
                    self.ensure_rootfs_disk(record, &paths)?;
                    mount_rootfs(&paths, OverlayUse::Machine)?;
                }
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
                    crate::guest_files::write_file(
                        &paths.rootfs,
                        &file.guest_path,
                        &content,
                        file.mode.unwrap_or(0o644),
                    )?;
                }
                Ok(())
            }
            Step::RefreshEnv => self.refresh_env(record, &paths),
            Step::Run => self.run_container(record, &paths).await,
            Step::SignalStop => self.signal_stop(record, plan).await,
            Step::DeleteContainer => {
                // Whatever the machine forked dies with it, so the runtime
                // can remove its cgroups.
                roost_runtime::cgroup::kill_all(&crate::paths::cgroup_name(&id), KILL_GRACE)
                    .await?;
                self.runtime_for(record)?.delete(&id, true).await?;
                if !roost_runtime::logs::wait_for_relay(&paths.log, LOG_RELAY_GRACE).await {
                    tracing::warn!(machine = %id, "the log relay still runs after the container was deleted");
                }
                Ok(())
            }
            Step::AttachVolumes => self.attach_volumes(record).await,
            Step::DetachVolumes => self.detach_volumes(&id).await,
            Step::UnmountRootfs => Ok(roost_runtime::rootfs::unmount(&paths.rootfs)?),
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
            Step::RemoveFiles => self.rootfs.remove(&id),
        }
    }

    /// Makes and mounts the machine's root filesystem disk, of its
    /// config's size, unless that is done ([`crate::rootfs`]).
    pub(crate) fn ensure_rootfs_disk(
        &self,
        record: &MachineRecord,
        paths: &MachinePaths,
    ) -> Result<()> {
        let size_gb = crate::rootfs::size_gb(&record.config);
        self.rootfs.ensure(paths, &record.id, size_gb)
    }

    async fn run_container(&self, record: &mut MachineRecord, paths: &MachinePaths) -> Result<()> {
        let runtime = self.runtime_for(record)?;
        let id = record.id.as_str();
        if let Some(state) = runtime.state(id).await? {
            if state.status == roost_runtime::ContainerStatus::Running {
                record.init_pid = state.pid;
                return Ok(());
            }
            runtime.delete(id, true).await?;
        }
        self.ensure_network(record).await?;
        // create + start rather than `run --detach`: measured faster with
        // crun 1.8, whose `run` waits for the container's process to start.
        let pid = runtime
            .create(id, &paths.bundle, &paths.log, &self.log_relay)
            .await?;
        runtime.start(id).await?;
        record.init_pid = Some(pid);
        Ok(())
    }

    async fn signal_stop(&self, record: &mut MachineRecord, plan: &MachinePlan) -> Result<()> {
        let runtime = self.runtime_for(record)?;
        let id = record.id.as_str();
        // The record knows the init's pid on every path but a crash between
        // starting the container and recording it; only then ask the runtime.
        let pid = match record.init_pid {
            Some(pid) => pid,
            None => match runtime.state(id).await? {
                Some(state) if state.status == roost_runtime::ContainerStatus::Running => {
                    match state.pid {
                        Some(pid) => pid,
                        None => return Ok(()),
                    }
                }
                _ => return Ok(()),
            },
        };
        let signal = plan
            .stop_signal
            .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
            .unwrap_or(nix::sys::signal::Signal::SIGTERM);
        if signal != nix::sys::signal::Signal::SIGKILL {
            runtime.kill(id, signal).await?;
            let timeout = Duration::from_millis(
                plan.stop_timeout_ms
                    .unwrap_or(crate::DEFAULT_STOP_TIMEOUT_MS),
            );
            if tokio::time::timeout(timeout, roost_runtime::wait_for_exit(pid))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tracing::info!(
                machine = id,
                "main process ignored {signal} for {timeout:?}; killing it"
            );
        }
        // Through the cgroup: SIGKILL to the init alone leaves a fork bomb
        // racing the teardown of its pid namespace.
        roost_runtime::cgroup::kill_all(&crate::paths::cgroup_name(id), KILL_GRACE).await?;
        tokio::time::timeout(KILL_GRACE, roost_runtime::wait_for_exit(pid))
            .await
            .map_err(|_| {
                MachineError::Internal(format!(
                    "machine {id} did not exit {KILL_GRACE:?} after SIGKILL"
                ))
            })??;
        Ok(())
    }
}

/// How long a SIGKILLed machine's processes may take to exit (each of the
/// cgroup kill and the init's exit) before stop reports an error.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// How long deleting a container waits for its log relay to write the last
/// output and end (milliseconds, unless something outside the container
/// still holds the machine's output pipe).
const LOG_RELAY_GRACE: Duration = Duration::from_secs(2);

/// Mounts the machine's overlay rootfs: its image layers below its upper dir.
pub(crate) fn mount_rootfs(paths: &MachinePaths, purpose: OverlayUse) -> Result<()> {
    // The layer list is lowest first; overlayfs wants the topmost first.
    let mut lowers = read_lower_file(paths)?;
    lowers.reverse();
    roost_runtime::rootfs::mount_overlay(
        &lowers,
        &paths.upper,
        &paths.work,
        &paths.rootfs,
        purpose,
    )?;
    Ok(())
}

pub(crate) fn read_lower_file(paths: &MachinePaths) -> Result<Vec<std::path::PathBuf>> {
    let text = std::fs::read_to_string(&paths.lower).map_err(|e| {
        MachineError::Internal(format!(
            "machine's layer list {} is unreadable: {e}",
            paths.lower.display()
        ))
    })?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(Into::into)
        .collect())
}

/// Empties `dir` (creating it if missing) without removing it, so the
/// overlay's upper/work dirs keep their identity.
fn reset_dir_contents(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)
}
