//! Running extra commands inside a machine (`crun exec`).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;

use crate::bundle::{process_spec, ProcessSpec};
use crate::runtime::{read_pid_file, scratch_dir, validate_id};
use crate::{Runtime, RuntimeError};

/// Output kept per stream; the rest is read and discarded so a chatty
/// command cannot exhaust the daemon's memory.
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// How long to keep reading after the command exited. Background processes
/// it started (`server &`) inherit its stdout and may never close it.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// How long the runtime may take to notice a killed exec and exit.
const REAP_GRACE: Duration = Duration::from_secs(2);

/// A command to run inside a running machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Program and arguments; the program is looked up in the `PATH` of `env`.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs, the whole environment of the command. A default
    /// `PATH` is added when none is given.
    pub env: Vec<String>,
    /// Working directory inside the machine; the machine's default if `None`.
    pub cwd: Option<String>,
    /// User to run as.
    pub uid: u32,
    /// Group to run as.
    pub gid: u32,
    /// After this long the command is killed and [`RuntimeError::Timeout`]
    /// returned.
    pub timeout: Duration,
}

/// What an exec'd command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Standard output, up to 16 MiB.
    pub stdout: Vec<u8>,
    /// Standard error, up to 16 MiB.
    pub stderr: Vec<u8>,
    /// Exit code, or 128 + signal number if the command was killed.
    pub exit_code: i32,
}

impl Runtime {
    /// Runs `req` inside running container `id` and collects its output.
    ///
    /// The command gets the machine's capabilities, rlimits, seccomp
    /// profile and `no_new_privs`. Its arguments and environment reach the
    /// runtime in a process file (`exec --process`), never on a command
    /// line, which any local user can read in `/proc`. runc copies the command's output itself and returns
    /// only when every holder of its stdout/stderr is gone, so with runc a
    /// background process must redirect its output (`cmd >/dev/null 2>&1 &`);
    /// with crun, output is read for a short while after the command exits.
    ///
    /// A runtime failure before the command started is an error: unknown
    /// container, or [`RuntimeError::NotStarted`] (no such program, ...); a
    /// command that ran and failed is an [`ExecOutput`] with its exit code. On timeout the command is killed
    /// via the pid the runtime recorded for it.
    pub async fn exec(&self, id: &str, req: &ExecRequest) -> Result<ExecOutput, RuntimeError> {
        validate_id(id)?;
        if req.args.is_empty() {
            return Err(RuntimeError::invalid(
                "exec args",
                "the command to run is empty",
            ));
        }
        check_process_strings("exec args", &req.args, false)?;
        check_process_strings("exec env", &req.env, true)?;
        let scratch = scratch_dir("exec")?;
        let pid_file = scratch.path().join("pid");
        let process_file = scratch.path().join("process.json");
        let process = process_spec(&ProcessSpec {
            terminal: false,
            uid: req.uid,
            gid: req.gid,
            args: &req.args,
            env: &req.env,
            cwd: req.cwd.as_deref().unwrap_or("/"),
        });
        write_private(&process_file, &process)?;

        let args: Vec<&OsStr> = vec![
            OsStr::new("exec"),
            // crun does not take this from the process file.
            OsStr::new("--no-new-privs"),
            OsStr::new("--pid-file"),
            pid_file.as_os_str(),
            OsStr::new("--process"),
            process_file.as_os_str(),
            OsStr::new(id),
        ];

        let mut cmd = self.command(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|err| {
            RuntimeError::io(format!("cannot run `{}`", self.describe(&args)), err)
        })?;
        let collected = tokio::time::timeout(req.timeout, collect(&mut child)).await;
        // What the runtime forked into the machine and left behind would
        // otherwise keep the machine from ever stopping.
        let _reaped = crate::process::reap_orphans();
        let Ok(collected) = collected else {
            self.kill_exec(&mut child, &pid_file, id).await?;
            let _reaped = crate::process::reap_orphans();
            return Err(RuntimeError::Timeout {
                command: self.describe(&args),
                timeout: req.timeout,
            });
        };
        let (status, stdout, stderr) = collected.map_err(|err| {
            RuntimeError::io(
                format!("cannot read output of `{}`", self.describe(&args)),
                err,
            )
        })?;

        // The runtime writes the pid file once the command exists; without
        // it, the command never ran: in a container that exists, because the
        // runtime could not start it there (a missing program, say).
        if !status.success() && read_pid_file(&pid_file)?.is_none() {
            if !self.exists(id) {
                return Err(self.not_found(id));
            }
            return Err(RuntimeError::NotStarted {
                reason: String::from_utf8_lossy(&stderr).trim().to_owned(),
            });
        }
        let exit_code = exit_code(status);
        tracing::debug!(id, exit_code, "exec finished");
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }

    /// Kills a timed-out exec: the command itself by the pid the runtime
    /// recorded, then the runtime process if it does not exit on its own.
    ///
    /// The runtime gets a moment to reap the command. Killed first, it would
    /// leave the command to be re-parented to the roost daemon (a subreaper)
    /// as a zombie nobody waits for, and the machine's pid namespace cannot
    /// be torn down while such a zombie exists.
    async fn kill_exec(
        &self,
        child: &mut Child,
        pid_file: &Path,
        id: &str,
    ) -> Result<(), RuntimeError> {
        let pid = read_pid_file(pid_file)?;
        tracing::warn!(id, ?pid, "exec timed out, killing it");
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            // ESRCH only means it exited in the meantime.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if tokio::time::timeout(REAP_GRACE, child.wait())
            .await
            .is_err()
        {
            child
                .kill()
                .await
                .map_err(|err| RuntimeError::io("cannot kill the runtime's exec process", err))?;
        }
        Ok(())
    }
}

/// Refuses what no process can be given: a NUL byte (argv and environ
/// are NUL-terminated), and for the environment an entry without `=`.
/// The message names the index, never the value, which may be a secret.
pub(crate) fn check_process_strings(
    what: &'static str,
    values: &[String],
    env: bool,
) -> Result<(), RuntimeError> {
    for (index, value) in values.iter().enumerate() {
        if value.contains('\0') {
            return Err(RuntimeError::invalid(
                what,
                format!("entry {index} contains a NUL byte"),
            ));
        }
        if env && !value.contains('=') {
            return Err(RuntimeError::invalid(
                what,
                format!("entry {index} is not of the form KEY=VALUE"),
            ));
        }
    }
    Ok(())
}

/// Writes the process spec where only root can read it: the file is 0600
/// inside the exec's 0700 scratch directory, which is removed afterwards.
fn write_private(path: &Path, process: &serde_json::Value) -> Result<(), RuntimeError> {
    let bytes = serde_json::to_vec(process).map_err(|err| {
        RuntimeError::io(
            "cannot serialize the exec process",
            std::io::Error::other(err),
        )
    })?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(&bytes))
        .map_err(|err| RuntimeError::io(format!("cannot write {}", path.display()), err))
}

/// Shell convention: the exit code, or 128 + signal for a killed process.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|sig| 128 + sig))
        .unwrap_or(-1)
}

/// Waits for `child` while reading both pipes, then reads what is left for
/// at most [`DRAIN_AFTER_EXIT`].
async fn collect(child: &mut Child) -> std::io::Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut out_buf, mut err_buf) = ([0u8; 8192], [0u8; 8192]);
    let status = loop {
        tokio::select! {
            exited = child.wait() => break exited?,
            n = read_some(&mut stdout, &mut out_buf) => keep(&mut stdout, &mut out, &out_buf, n?),
            n = read_some(&mut stderr, &mut err_buf) => keep(&mut stderr, &mut err, &err_buf, n?),
        }
    };
    let drain = tokio::time::sleep(DRAIN_AFTER_EXIT);
    tokio::pin!(drain);
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            n = read_some(&mut stdout, &mut out_buf) => keep(&mut stdout, &mut out, &out_buf, n?),
            n = read_some(&mut stderr, &mut err_buf) => keep(&mut stderr, &mut err, &err_buf, n?),
            () = &mut drain => break,
        }
    }
    Ok((status, out, err))
}

/// Reads from an open pipe; a closed one (`None`) never becomes ready.
async fn read_some<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Appends what was read, up to [`MAX_OUTPUT`]; closes the pipe at EOF.
fn keep<R>(pipe: &mut Option<R>, sink: &mut Vec<u8>, buf: &[u8], n: usize) {
    if n == 0 {
        *pipe = None;
        return;
    }
    let room = MAX_OUTPUT.saturating_sub(sink.len());
    sink.extend_from_slice(&buf[..n.min(room)]);
}
