//! What runs inside a started machine: exec, its processes, and its log.

use crate::error::{MachineError, Result};
use crate::machines::decide;
use crate::{spec, Inner, LogFiles, Service};
use roost_lifecycle::{Intent, Right, Target};
use roost_types::{ExecRequest, ExecResponse, ListenSocket, NumberRange, ProcessStat};
use std::time::Duration;

/// Default exec timeout, in seconds; the range is [`NumberRange`]'s.
const DEFAULT_EXEC_SECS: u64 = 30;

impl Service {
    /// Processes inside a started machine.
    pub async fn processes(&self, app: &str, id: &str) -> Result<Vec<ProcessStat>> {
        let inner = self.authorize(Right::Read, Target::Machine { app, id })?;
        let record = inner.machine(app, id)?;
        decide(&record, &Intent::Processes)?;
        let pid = record.init_pid.ok_or_else(|| {
            MachineError::Internal(format!("machine {id} is started but its pid is unknown"))
        })?;
        Ok(inner
            .host
            .processes(pid)
            .await?
            .into_iter()
            .map(|p| ProcessStat {
                pid: p.pid,
                command: p.command,
                directory: p.directory,
                cpu: p.cpu,
                rss: p.rss,
                rtime: p.rtime,
                stime: p.stime,
                listen_sockets: p
                    .listen_sockets
                    .into_iter()
                    .map(|(proto, address)| ListenSocket { proto, address })
                    .collect(),
            })
            .collect())
    }

    /// Runs a command inside a started machine, with the main process's
    /// environment, user and working directory.
    pub async fn exec(&self, app: &str, id: &str, req: ExecRequest) -> Result<ExecResponse> {
        let inner = self.authorize(Right::Exec, Target::Machine { app, id })?;
        let args: Vec<String> = if !req.command.is_empty() {
            spec::check_argv("command", &req.command)?;
            if req.command[0].is_empty() {
                return Err(MachineError::Invalid(
                    "command[0] is empty: it names the program to run".into(),
                ));
            }
            req.command
        } else {
            if req.cmd.as_deref().is_some_and(|cmd| cmd.contains('\0')) {
                return Err(MachineError::Invalid(
                    "cmd contains a NUL byte, which a process argument cannot hold".into(),
                ));
            }
            req.cmd
                .as_deref()
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        if args.is_empty() {
            return Err(MachineError::Invalid(
                "exec needs a command: `command` (argv array) or `cmd` (string)".into(),
            ));
        }
        let secs = NumberRange::EXEC_TIMEOUT_SECS
            .check_unsigned("timeout", req.timeout.unwrap_or(DEFAULT_EXEC_SECS))
            .map_err(MachineError::Invalid)?;
        let record = inner.machine(app, id)?;
        decide(&record, &Intent::Exec)?;
        let image = inner.images.get(&record.image_ref.digest)?;
        let (uid, gid) = match image.config.user.as_deref().filter(|u| !u.is_empty()) {
            Some(user) => inner.images.resolve_user(&image, user)?,
            None => (0, 0),
        };
        // With the environment the main process started with (its bundle's),
        // so exec sees what the main process sees: secrets and storage
        // variables changed since reach both at the next start.
        let exec = roost_host::ExecSpec {
            args,
            cwd: image.config.working_dir.clone().filter(|d| !d.is_empty()),
            uid,
            gid,
            timeout: Duration::from_secs(secs),
        };
        let runtime = inner.runtime_for(&record)?;
        let output = inner.host.exec(id, runtime, &exec).await?;
        Ok(ExecResponse {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            exit_code: output.exit_code,
            exit_signal: 0,
        })
    }

    /// Where the machine's log is on its host: what it wrote so far, oldest
    /// first, and the file new output goes to.
    pub fn log_files(&self, app: &str, id: &str) -> Result<LogFiles> {
        self.authorize(Right::Read, Target::Machine { app, id })?
            .log_files(app, id)
    }
}

impl Inner {
    /// Where the machine's log is on its host.
    pub(crate) fn log_files(&self, app: &str, id: &str) -> Result<LogFiles> {
        let record = self.machine(app, id)?;
        Ok(self.host.log_files(&record.id))
    }
}
