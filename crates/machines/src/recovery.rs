//! Convergence after a restart, and reacting to main processes that exit
//! on their own.

use crate::error::{MachineError, Result};
use crate::Inner;
use roost_engine::Logged;
use roost_lifecycle::{restart_backoff, AfterExit, Intent, MachineRecord, Source, Transition};
use roost_store::{Operation, OperationSubject};
use roost_types::MachineState;
use std::collections::HashSet;
use std::sync::Arc;

impl Inner {
    /// Brings every machine to a valid state; see [`crate::Machines::open`].
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<()> {
        self.thaw_volumes()?;
        for op in self.store.unfinished_operations()? {
            if let Err(err) = self.resume(&op).await {
                tracing::error!(subject = %op.subject_id, op = %op.kind, error = %err, "resumed operation failed");
            }
        }
        let records = self.store.list_machines(None)?;
        for record in &records {
            if let Err(err) = self.converge(record).await {
                tracing::error!(machine = %record.id, error = %err, "could not converge machine");
            }
        }
        self.remove_orphans(&records).await?;
        self.converge_network(&records).await
    }

    /// Resumes an unfinished operation of the one log, machine's or
    /// volume's, oldest first, so each resumes in the order it began.
    async fn resume(self: &Arc<Self>, op: &Operation) -> Result<()> {
        let (id, subject) = (&op.subject_id, op.subject.as_str());
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        tracing::info!(subject, id, op = %op.kind, step = op.step, "resuming an interrupted operation");
        let logged = Logged {
            id: op.id,
            next_step: op.step as usize,
        };
        let resumed = match op.subject {
            OperationSubject::Machine => match self.store.get_machine(id)? {
                Some(record) => Some(self.resume_op(record, recorded_plan(op)?, logged).await),
                None => None,
            },
            OperationSubject::Volume => match self.store.get_volume(id)? {
                Some(record) => Some(
                    self.resume_volume_op(record, recorded_plan(op)?, logged)
                        .await,
                ),
                None => None,
            },
        };
        resumed.unwrap_or_else(|| {
            tracing::warn!(
                subject,
                id,
                "dropping the operation of something that no longer exists"
            );
            Ok(())
        })
    }

    /// A started machine keeps running (its exit watcher is re-armed) or is
    /// handled as exited; any other machine must hold no container or mount.
    async fn converge(self: &Arc<Self>, record: &MachineRecord) -> Result<()> {
        let id = &record.id;
        let runtime = self.runtime_for(record)?;
        let running_pid = self.host.running_pid(id, runtime).await?;
        if record.state == MachineState::Started {
            match running_pid {
                Some(pid) => {
                    if record.init_pid != Some(pid) {
                        let mut updated = record.clone();
                        updated.init_pid = Some(pid);
                        self.store.update_machine(&updated, None)?;
                    }
                    self.watch_exit(id, &record.instance_id, pid);
                }
                None => {
                    let instance = &record.instance_id;
                    self.exited(id, instance, record.init_pid, None).await?
                }
            }
            return Ok(());
        }
        Ok(self.host.put_to_rest(id, runtime).await?)
    }

    /// Containers and machine directories that no machine record owns are
    /// leftovers of a create interrupted before its record was written.
    async fn remove_orphans(&self, records: &[MachineRecord]) -> Result<()> {
        let known: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
        let live: HashSet<String> = records
            .iter()
            .filter(|r| r.state != MachineState::Destroyed)
            .map(|r| r.id.clone())
            .collect();
        Ok(self.host.remove_orphan_machines(&known, &live).await?)
    }

    /// Waits in the background for the main process of a started machine.
    pub(crate) fn watch_exit(self: &Arc<Self>, id: &str, instance_id: &str, pid: u32) {
        let inner = Arc::clone(self);
        let (id, instance_id) = (id.to_string(), instance_id.to_string());
        tokio::spawn(async move {
            let code = match inner.host.wait_for_exit(pid).await {
                Ok(code) => code,
                Err(err) => {
                    tracing::error!(machine = %id, error = %err, "cannot watch main process");
                    return;
                }
            };
            if let Err(err) = inner.exited(&id, &instance_id, Some(pid), code).await {
                tracing::error!(machine = %id, error = %err, "handling exit failed");
            }
        });
    }

    /// The machine, if it is still the run whose main process exited: an
    /// operation of ours (stop, restart, update, destroy) that took this
    /// instance down leaves nothing to react to. The caller holds the lock.
    fn same_run(
        &self,
        id: &str,
        instance_id: &str,
        pid: Option<u32>,
    ) -> Result<Option<MachineRecord>> {
        Ok(self.store.get_machine(id)?.filter(|record| {
            record.state == MachineState::Started
                && record.instance_id == instance_id
                && record.init_pid == pid
        }))
    }

    /// The main process (`pid`) of a started machine exited by itself:
    /// record it, then restart, stop or destroy the machine as its restart
    /// policy and `auto_destroy` say. `code` is `None` when the exit status
    /// could not be observed (the process exited while roost was down).
    ///
    /// A restart first backs off, so a process that dies at once does not
    /// spin the host; the machine's lock is free meanwhile, so a stop or
    /// destroy asked for then goes ahead at once and the restart is dropped.
    async fn exited(
        self: &Arc<Self>,
        id: &str,
        instance_id: &str,
        pid: Option<u32>,
        code: Option<i32>,
    ) -> Result<()> {
        let restarts = {
            let lock = self.lock_for(id);
            let _guard = lock.lock().await;
            let Some(record) = self.same_run(id, instance_id, pid)? else {
                return Ok(());
            };
            let after = AfterExit::of(&record.config, code, record.restart_count);
            let restarting = matches!(after, AfterExit::Restart { .. });
            let exit_event = crate::ops::event(
                "exit",
                "stopped",
                Source::Platform.as_str(),
                Some(serde_json::json!({"exit_event": {
                    "exit_code": code.unwrap_or(-1),
                    "exited_at": crate::now_rfc3339(),
                    "requested_stop": false,
                    "restarting": restarting,
                }})),
            );
            self.store.append_event(id, &exit_event)?;
            tracing::info!(machine = %id, ?code, ?after, "main process exited");
            if !restarting {
                return self.run_exit_plan(record, after).await;
            }
            record.restart_count + 1
        };
        tokio::time::sleep(restart_backoff(restarts)).await;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let Some(mut record) = self.same_run(id, instance_id, pid)? else {
            tracing::info!(machine = %id, "an operation took the machine over during the restart back-off");
            return Ok(());
        };
        let after = AfterExit::of(&record.config, code, record.restart_count);
        record.restart_count = restarts;
        self.run_exit_plan(record, after).await
    }

    async fn run_exit_plan(
        self: &Arc<Self>,
        record: MachineRecord,
        after: AfterExit,
    ) -> Result<()> {
        match crate::machines::decide(&record, &Intent::Exit(after))? {
            Transition::Run(plan) => self.run_new_op(record, plan).await.map(|_| ()),
            _ => Ok(()),
        }
    }
}

/// The plan `op` recorded.
fn recorded_plan<P: serde::de::DeserializeOwned>(op: &Operation) -> Result<P> {
    serde_json::from_value(op.params.clone()).map_err(|e| {
        MachineError::Internal(format!(
            "the plan of {} operation {} ({}) is unreadable: {e}",
            op.subject.as_str(),
            op.id,
            op.kind
        ))
    })
}
