//! Durable lifecycle operations.
//!
//! Every lifecycle change (create, start, stop, restart, update, destroy and
//! the handling of a main process that exited on its own) is a
//! [`MachinePlan`] from the lifecycle model: a list of idempotent [`Step`]s
//! plus the state the machine settles in. The
//! plan is written to the store together with the machine's transitional
//! state before the first step runs, and the index of the next step after
//! each one. A roost process killed anywhere therefore leaves an operation
//! that the next process resumes at the step that was under way; because
//! each step checks the world before acting (is the rootfs mounted? does the
//! container exist?), running it twice is harmless.

use crate::error::{MachineError, Result};
use crate::paths::MachinePaths;
use crate::Inner;
use roost_lifecycle::{MachinePlan, Operation as _, Step, StepName};
use roost_runtime::rootfs::OverlayUse;
use roost_store::{MachineRecord, Operation};
use roost_types::{MachineEvent, MachineState};
use std::sync::Arc;
use std::time::Duration;

/// Environment variable naming a step at which roost kills itself (SIGKILL)
/// right after the step's action and before its progress is recorded:
/// `ROOST_CRASH_AT=<op>:<step>`, e.g. `start:run`. For crash-recovery tests.
pub const CRASH_AT_ENV: &str = "ROOST_CRASH_AT";

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

fn crash_point_reached(inner: &Inner, plan: &MachinePlan, step: Step) -> bool {
    inner.crash_at.as_deref() == Some(&format!("{}:{}", plan.kind.name(), step.name()))
}

impl Inner {
    /// Records `plan` for `record` and runs it to the end. The caller holds
    /// the machine's lock.
    pub(crate) async fn run_new_op(
        self: &Arc<Self>,
        mut record: MachineRecord,
        plan: MachinePlan,
    ) -> Result<MachineRecord> {
        record.machine.state = plan.first_state();
        record.machine.updated_at = crate::now_rfc3339();
        let begin = event(
            plan.kind.name(),
            record.machine.state.as_str(),
            plan.source.as_str(),
            None,
        );
        let op = self.store.begin_operation(
            &record,
            Some(&begin),
            plan.kind.name(),
            &serde_json::to_value(&plan).map_err(|e| MachineError::Internal(e.to_string()))?,
        )?;
        self.notify_change();
        self.run_op(op.id, record, plan, 0).await
    }

    /// Resumes an operation a previous process left unfinished.
    pub(crate) async fn resume_op(self: &Arc<Self>, op: Operation) -> Result<()> {
        let Some(record) = self.store.get_machine(&op.machine_id)? else {
            tracing::warn!(machine = %op.machine_id, "dropping operation of a machine that no longer exists");
            return Ok(());
        };
        let plan: MachinePlan = serde_json::from_value(op.params.clone())
            .map_err(|e| MachineError::Internal(format!("unreadable operation {}: {e}", op.id)))?;
        tracing::info!(machine = %op.machine_id, op = plan.kind.name(), step = op.step, "resuming interrupted operation");
        self.run_op(op.id, record, plan, op.step as usize)
            .await
            .map(|_| ())
    }

    pub(crate) async fn run_op(
        self: &Arc<Self>,
        op_id: i64,
        mut record: MachineRecord,
        plan: MachinePlan,
        from: usize,
    ) -> Result<MachineRecord> {
        for (index, step) in plan.steps.iter().copied().enumerate().skip(from) {
            let state = plan.state_during(step);
            if record.machine.state != state {
                record.machine.state = state;
                self.store.update_machine(&record, None)?;
                self.notify_change();
            }
            if let Err(err) = self.run_step(step, &mut record, &plan).await {
                tracing::error!(machine = %record.machine.id, step = step.name(), error = %err, "operation step failed");
                self.fail_op(op_id, &mut record, &plan, step, &err).await;
                return Err(err);
            }
            if crash_point_reached(self, &plan, step) {
                tracing::error!(step = step.name(), "{CRASH_AT_ENV} reached: killing roost");
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
            self.store.set_operation_step(op_id, index as u32 + 1)?;
        }
        record.machine.state = plan.settle;
        record.machine.updated_at = crate::now_rfc3339();
        if plan.settle != MachineState::Started {
            record.init_pid = None;
        }
        let done = event(
            plan.kind.name(),
            plan.settle.as_str(),
            plan.source.as_str(),
            None,
        );
        self.store.finish_operation(op_id, &record, Some(&done))?;
        if plan.settle == MachineState::Destroyed {
            self.store.delete_lease(&record.machine.id)?;
        }
        self.notify_change();
        if let (MachineState::Started, Some(pid)) = (plan.settle, record.init_pid) {
            self.watch_exit(&record.machine.id, &record.machine.instance_id, pid);
        }
        Ok(record)
    }

    /// A step failed: take down whatever runs, mark the machine failed and
    /// close the operation, so nothing half-started is left behind.
    async fn fail_op(
        self: &Arc<Self>,
        op_id: i64,
        record: &mut MachineRecord,
        plan: &MachinePlan,
        failed: Step,
        err: &MachineError,
    ) {
        for step in plan.compensation().iter().copied() {
            if let Err(cleanup) = self.run_step(step, record, plan).await {
                tracing::error!(machine = %record.machine.id, step = step.name(), error = %cleanup, "cleanup after failure failed");
            }
        }
        record.machine.state = MachineState::Failed;
        record.init_pid = None;
        record.machine.updated_at = crate::now_rfc3339();
        let failure = event(
            plan.kind.name(),
            "failed",
            plan.source.as_str(),
            Some(serde_json::json!({"error": err.to_string(), "step": failed.name()})),
        );
        if let Err(store_err) = self.store.finish_operation(op_id, record, Some(&failure)) {
            tracing::error!(error = %store_err, "could not record failed operation; it will be resumed at restart");
        }
        self.notify_change();
    }

    async fn run_step(
        &self,
        step: Step,
        record: &mut MachineRecord,
        plan: &MachinePlan,
    ) -> Result<()> {
        let id = record.machine.id.clone();
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
                for file in &record.machine.config.files {
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
        let size_gb = crate::rootfs::size_gb(&record.machine.config);
        self.rootfs.ensure(paths, &record.machine.id, size_gb)
    }

    async fn run_container(&self, record: &mut MachineRecord, paths: &MachinePaths) -> Result<()> {
        let runtime = self.runtime_for(record)?;
        let id = record.machine.id.as_str();
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
        let id = record.machine.id.as_str();
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
