//! Convergence after a restart, and reacting to main processes that exit
//! on their own.

use crate::error::Result;
use crate::ops::{OpKind, OpPlan, Step};
use crate::paths::MachinePaths;
use crate::{spec, Inner};
use roost_store::MachineRecord;
use roost_types::{MachineState, RestartPolicy, RootfsPersist};
use std::sync::Arc;
use std::time::Duration;

impl Inner {
    /// Brings every machine to a valid state; see [`crate::Machines::open`].
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<()> {
        for op in self.store.unfinished_operations()? {
            let lock = self.lock_for(&op.machine_id);
            let _guard = lock.lock().await;
            if let Err(err) = self.resume_op(op).await {
                tracing::error!(error = %err, "resumed operation failed; machine marked failed");
            }
        }
        let records = self.store.list_machines(None)?;
        for record in &records {
            if let Err(err) = self.converge(record).await {
                tracing::error!(machine = %record.machine.id, error = %err, "could not converge machine");
            }
        }
        self.remove_orphans(&records).await?;
        self.converge_network(&records).await
    }

    /// A started machine keeps running (its exit watcher is re-armed) or is
    /// handled as exited; any other machine must hold no container or mount.
    async fn converge(self: &Arc<Self>, record: &MachineRecord) -> Result<()> {
        let id = &record.machine.id;
        let runtime = self.runtime_for(record)?;
        let running_pid = runtime
            .state(id)
            .await?
            .filter(|s| s.status == roost_runtime::ContainerStatus::Running)
            .and_then(|s| s.pid);
        if record.machine.state == MachineState::Started {
            match running_pid {
                Some(pid) => {
                    if record.init_pid != Some(pid) {
                        let mut updated = record.clone();
                        updated.init_pid = Some(pid);
                        self.store.update_machine(&updated, None)?;
                    }
                    self.watch_exit(id, &record.machine.instance_id, pid);
                }
                None => self.handle_exit(record.clone(), None).await?,
            }
            return Ok(());
        }
        runtime.delete(id, true).await?;
        let paths = MachinePaths::new(&self.data_dir, id);
        roost_runtime::rootfs::unmount(&paths.rootfs)?;
        Ok(())
    }

    /// Containers and machine directories that no machine record owns are
    /// leftovers of a create interrupted before its record was written.
    async fn remove_orphans(&self, records: &[MachineRecord]) -> Result<()> {
        let known = |id: &str| records.iter().any(|r| r.machine.id == id);
        for runtime in [&self.crun, &self.runc].into_iter().flatten() {
            for id in runtime.list().await? {
                if !known(&id) {
                    tracing::warn!(container = %id, "removing orphaned container");
                    runtime.delete(&id, true).await?;
                }
            }
        }
        for entry in std::fs::read_dir(self.data_dir.join("machines"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let destroyed = records
                .iter()
                .any(|r| r.machine.id == name && r.machine.state == MachineState::Destroyed);
            if !known(&name) || destroyed {
                let paths = MachinePaths::new(&self.data_dir, &name);
                roost_runtime::rootfs::unmount(&paths.rootfs)?;
                tracing::warn!(machine = %name, "removing orphaned machine files");
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }

    /// Waits in the background for the main process of a started machine.
    pub(crate) fn watch_exit(self: &Arc<Self>, id: &str, instance_id: &str, pid: u32) {
        let inner = Arc::clone(self);
        let (id, instance_id) = (id.to_string(), instance_id.to_string());
        tokio::spawn(async move {
            let code = match roost_runtime::wait_for_exit(pid).await {
                Ok(code) => code,
                Err(err) => {
                    tracing::error!(machine = %id, error = %err, "cannot watch main process");
                    return;
                }
            };
            let lock = inner.lock_for(&id);
            let _guard = lock.lock().await;
            let record = match inner.store.get_machine(&id) {
                Ok(Some(record)) => record,
                _ => return,
            };
            // An operation of ours (stop, restart, update, destroy) already
            // took this instance down: nothing to react to.
            let same_run = record.machine.state == MachineState::Started
                && record.machine.instance_id == instance_id
                && record.init_pid == Some(pid);
            if same_run {
                if let Err(err) = inner.handle_exit(record, code).await {
                    tracing::error!(machine = %id, error = %err, "handling exit failed");
                }
            }
        });
    }

    /// The main process exited by itself: record it, then restart, stop or
    /// destroy the machine as its restart policy and `auto_destroy` say.
    /// `code` is `None` when the exit status could not be observed (the
    /// process exited while roost was down); that counts as a failure.
    async fn handle_exit(
        self: &Arc<Self>,
        mut record: MachineRecord,
        code: Option<i32>,
    ) -> Result<()> {
        let config = &record.machine.config;
        let (policy, max_retries) = spec::restart_policy(config);
        let failed = code != Some(0);
        let restart = match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed && record.restart_count < max_retries,
            RestartPolicy::No => false,
        };
        let destroy = !restart && config.auto_destroy.unwrap_or(false);
        let exit_event = crate::ops::event(
            "exit",
            "stopped",
            "flyd",
            Some(serde_json::json!({"exit_event": {
                "exit_code": code.unwrap_or(-1),
                "exited_at": crate::now_rfc3339(),
                "requested_stop": false,
                "restarting": restart,
            }})),
        );
        self.store.append_event(&record.machine.id, &exit_event)?;
        tracing::info!(machine = %record.machine.id, ?code, restart, destroy, "main process exited");
        let mut steps = vec![
            Step::DeleteContainer,
            Step::DetachVolumes,
            Step::UnmountRootfs,
        ];
        let settle = if restart {
            let reset = spec::rootfs_persist(config) == RootfsPersist::Never;
            steps.extend(OpPlan::start_steps(reset));
            record.restart_count += 1;
            // Back off so a process that dies at once does not spin the host.
            let delay = Duration::from_millis(100u64 << record.restart_count.min(6));
            tokio::time::sleep(delay).await;
            MachineState::Started
        } else if destroy {
            steps.extend([Step::DisconnectNetwork, Step::RemoveFiles]);
            MachineState::Destroyed
        } else {
            MachineState::Stopped
        };
        let mut plan = OpPlan::new(
            if restart {
                OpKind::Restart
            } else if destroy {
                OpKind::Destroy
            } else {
                OpKind::Exit
            },
            steps,
            settle,
        );
        plan.source = "flyd".into();
        self.run_new_op(record, plan).await.map(|_| ())
    }
}
