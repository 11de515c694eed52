//! The OCI runtime driver: one short-lived `crun`/`runc` process per
//! lifecycle call.
//!
//! Shelling out (rather than linking a runtime library) keeps containers
//! independent of the roost daemon: once `create` returns, the machine's
//! init is owned by the kernel and the runtime's state directory, so the
//! daemon can crash or upgrade without touching running machines.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Deserialize;
use tokio::process::Command;

use crate::console;
use crate::host::{self, CgroupMode};
use crate::logs::LogRelay;
use crate::RuntimeError;

/// Upper bound for one lifecycle command. crun and runc finish in tens of
/// milliseconds; a runtime stuck for this long (e.g. on a frozen cgroup) is
/// killed instead of blocking the caller forever.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Which OCI runtime binary drives machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OciRuntimeKind {
    /// crun: the default; small and fast to start.
    Crun,
    /// runc: the reference implementation.
    Runc,
}

impl OciRuntimeKind {
    /// Every kind, in the order they are offered to users.
    pub const ALL: [OciRuntimeKind; 2] = [OciRuntimeKind::Crun, OciRuntimeKind::Runc];

    /// The binary name, which is also the name users select it by.
    pub fn as_str(self) -> &'static str {
        match self {
            OciRuntimeKind::Crun => "crun",
            OciRuntimeKind::Runc => "runc",
        }
    }
}

impl fmt::Display for OciRuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OciRuntimeKind {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                RuntimeError::invalid(
                    "OCI runtime",
                    format!("{s:?} is not supported; allowed values: crun, runc"),
                )
            })
    }
}

/// Lifecycle status as reported by the OCI runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerStatus {
    /// `create` is in progress.
    Creating,
    /// Created; the main process waits for `start`.
    Created,
    /// The main process runs.
    Running,
    /// Frozen by [`Runtime::pause`].
    Paused,
    /// The main process exited; the container awaits `delete`.
    Stopped,
}

/// What [`Runtime::state`] reports about a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerState {
    /// Lifecycle status.
    pub status: ContainerStatus,
    /// Host pid of the container's init while it exists.
    pub pid: Option<u32>,
}

/// A handle on one OCI runtime binary and its state directory.
///
/// Cheap to clone; every call runs a fresh runtime process, so the handle
/// may be shared freely between tasks.
#[derive(Debug, Clone)]
pub struct Runtime {
    kind: OciRuntimeKind,
    binary: PathBuf,
    state_root: PathBuf,
    /// crun on a hybrid host runs in a mount namespace without the v2
    /// hierarchy; see [`host::detach_unified_hierarchy`].
    detach_unified: bool,
}

impl Runtime {
    /// Looks the runtime binary up in `$PATH` and the system directories.
    ///
    /// `state_root` is passed as `--root` so roost's containers live apart
    /// from anyone else's; it is created (mode 0700) if missing.
    pub fn new(kind: OciRuntimeKind, state_root: PathBuf) -> Result<Runtime, RuntimeError> {
        let binary = host::find_program(kind.as_str(), kind.as_str())?;
        Runtime::with_binary(kind, binary, state_root)
    }

    /// Like [`Runtime::new`] with an explicit binary, e.g. a newer build
    /// installed outside the system directories.
    pub fn with_binary(
        kind: OciRuntimeKind,
        binary: PathBuf,
        state_root: PathBuf,
    ) -> Result<Runtime, RuntimeError> {
        let binary = host::check_program(&binary, kind.as_str())?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state_root)
            .map_err(|err| {
                RuntimeError::io(
                    format!("cannot create runtime state root {}", state_root.display()),
                    err,
                )
            })?;
        let state_root = fs::canonicalize(&state_root).map_err(|err| {
            RuntimeError::io(format!("cannot resolve {}", state_root.display()), err)
        })?;
        let mode = host::cgroup_mode()?;
        let detach_unified = kind == OciRuntimeKind::Crun && mode == CgroupMode::Hybrid;
        tracing::info!(
            runtime = %kind,
            binary = %binary.display(),
            root = %state_root.display(),
            cgroups = %mode,
            detach_unified,
            "OCI runtime ready"
        );
        Ok(Runtime {
            kind,
            binary,
            state_root,
            detach_unified,
        })
    }

    /// Which runtime this handle drives.
    pub fn kind(&self) -> OciRuntimeKind {
        self.kind
    }

    /// Creates container `id` from `bundle` without starting its process.
    ///
    /// The main process gets stdin from `/dev/null`; its stdout and stderr
    /// (or its terminal) go to a `relay` process that writes them to
    /// `log_path`, bounded (see [`crate::logs`]), and keeps doing so if the
    /// roost daemon dies. Returns the host pid of the container's init.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        log_path: &Path,
        relay: &LogRelay,
    ) -> Result<u32, RuntimeError> {
        validate_id(id)?;
        let scratch = scratch_dir("create")?;
        let pid_file = scratch.path().join("pid");
        let runtime_log = scratch.path().join("runtime.log");
        let console_path = scratch.path().join("console.sock");
        let console = console::bundle_wants_terminal(bundle)?
            .then(|| console::ConsoleSocket::bind(&console_path))
            .transpose()?;
        let mut args: Vec<&OsStr> = vec![
            "--log".as_ref(),
            runtime_log.as_ref(),
            "--log-format".as_ref(),
            "json".as_ref(),
        ];
        args.extend([
            OsStr::new("create"),
            OsStr::new("--bundle"),
            bundle.as_ref(),
            "--pid-file".as_ref(),
            pid_file.as_ref(),
        ]);
        if console.is_some() {
            args.extend(["--console-socket".as_ref(), console_path.as_os_str()]);
        }
        args.push(id.as_ref());
        let mut cmd = self.command(&args);
        if console.is_none() {
            // The container inherits the writing end; the relay ends when
            // the last process holding it does (or at once if create fails).
            let (output, writer) = std::io::pipe()
                .map_err(|err| RuntimeError::io("cannot create the log pipe", err))?;
            relay.spawn(output, log_path)?;
            let writer_err = writer
                .try_clone()
                .map_err(|err| RuntimeError::io("cannot create the log pipe", err))?;
            cmd.stdout(Stdio::from(writer))
                .stderr(Stdio::from(writer_err));
        } else {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let started = Instant::now();
        let handoff = console.map(|socket| tokio::spawn(socket.receive_master()));
        let status = self.wait(cmd, &args).await?.status;
        if !status.success() {
            if let Some(handoff) = handoff {
                handoff.abort();
            }
            return Err(RuntimeError::CommandFailed {
                command: self.describe(&args),
                status: status.to_string(),
                stderr: runtime_log_errors(&runtime_log),
            });
        }
        if let Some(handoff) = handoff {
            let master = handoff.await.map_err(|err| RuntimeError::BadOutput {
                command: self.describe(&args),
                reason: format!("terminal handoff failed: {err}"),
            })??;
            relay.spawn(master, log_path)?;
        }
        let pid = read_pid_file(&pid_file)?.ok_or_else(|| RuntimeError::BadOutput {
            command: self.describe(&args),
            reason: format!("no pid file was written to {}", pid_file.display()),
        })?;
        tracing::debug!(runtime = %self.kind, id, pid, elapsed = ?started.elapsed(), "container created");
        Ok(pid)
    }

    /// Starts the main process of a created container.
    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        validate_id(id)?;
        self.run_for(id, &["start".as_ref(), id.as_ref()]).await
    }

    /// Freezes every process of the container (cgroup freezer).
    pub async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        validate_id(id)?;
        self.run_for(id, &["pause".as_ref(), id.as_ref()]).await
    }

    /// Thaws a container frozen by [`Runtime::pause`].
    pub async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        validate_id(id)?;
        self.run_for(id, &["resume".as_ref(), id.as_ref()]).await
    }

    /// Sends `signal` to the container's init (tini), which forwards it to
    /// the main process. A container that is not running is not an error.
    pub async fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        validate_id(id)?;
        let number = (signal as i32).to_string();
        let args: [&OsStr; 3] = ["kill".as_ref(), id.as_ref(), number.as_ref()];
        let output = self.output(&args).await?;
        if output.status.success() {
            return Ok(());
        }
        match self.state(id).await? {
            None => Err(self.not_found(id)),
            Some(state) if state.status == ContainerStatus::Stopped => Ok(()),
            Some(_) => Err(self.failed(&args, &output)),
        }
    }

    /// Deletes a container and its cgroups. A container that does not exist
    /// is not an error, so the call can be retried; `force` kills a running
    /// container first.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        validate_id(id)?;
        if !self.exists(id) {
            return Ok(());
        }
        let mut args: Vec<&OsStr> = vec!["delete".as_ref()];
        if force {
            args.push("--force".as_ref());
        }
        args.push(id.as_ref());
        let output = self.output(&args).await?;
        if output.status.success() || !self.exists(id) {
            return Ok(());
        }
        Err(self.failed(&args, &output))
    }

    /// The container's state, or `None` if the runtime does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        validate_id(id)?;
        if !self.exists(id) {
            return Ok(None);
        }
        let args: [&OsStr; 2] = ["state".as_ref(), id.as_ref()];
        let output = self.output(&args).await?;
        if !output.status.success() {
            if !self.exists(id) {
                return Ok(None);
            }
            return Err(self.failed(&args, &output));
        }
        parse_state(&output.stdout)
            .map(Some)
            .map_err(|reason| RuntimeError::BadOutput {
                command: self.describe(&args),
                reason,
            })
    }

    /// Ids of all containers under this runtime's state root.
    pub async fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let args: [&OsStr; 2] = ["list".as_ref(), "--quiet".as_ref()];
        let output = self.output(&args).await?;
        if !output.status.success() {
            return Err(self.failed(&args, &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Whether the runtime has state for `id`. Both crun and runc keep one
    /// directory per container under `--root`; checking it avoids spawning
    /// a process to learn that a container is gone.
    pub(crate) fn exists(&self, id: &str) -> bool {
        self.state_root.join(id).is_dir()
    }

    /// Runs a command about container `id`, mapping failures to
    /// [`RuntimeError::NotFound`] when the container does not exist.
    async fn run_for(&self, id: &str, args: &[&OsStr]) -> Result<(), RuntimeError> {
        let output = self.output(args).await?;
        if output.status.success() {
            return Ok(());
        }
        if !self.exists(id) {
            return Err(self.not_found(id));
        }
        Err(self.failed(args, &output))
    }

    /// Runs the runtime with `args`, capturing its output.
    async fn output(&self, args: &[&OsStr]) -> Result<Output, RuntimeError> {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.wait(cmd, args).await
    }

    /// Spawns `cmd` and waits for it, killing it after [`COMMAND_TIMEOUT`].
    async fn wait(&self, mut cmd: Command, args: &[&OsStr]) -> Result<Output, RuntimeError> {
        let started = Instant::now();
        let child = cmd.spawn().map_err(|err| {
            RuntimeError::io(format!("cannot run `{}`", self.describe(args)), err)
        })?;
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| RuntimeError::Timeout {
                command: self.describe(args),
                timeout: COMMAND_TIMEOUT,
            })?
            .map_err(|err| {
                RuntimeError::io(format!("cannot wait for `{}`", self.describe(args)), err)
            })?;
        tracing::debug!(command = %self.describe(args), status = %output.status, elapsed = ?started.elapsed(), "runtime command finished");
        Ok(output)
    }

    /// A runtime invocation with `--root`, stdin from `/dev/null`, and the
    /// hybrid-cgroup workaround when needed. The child is killed if the
    /// caller stops waiting for it.
    pub(crate) fn command(&self, args: &[&OsStr]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.state_root)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if self.detach_unified {
            // SAFETY: the hook only makes async-signal-safe system calls
            // with static arguments (see its documentation).
            unsafe {
                cmd.pre_exec(host::detach_unified_hierarchy);
            }
        }
        cmd
    }

    /// The command line, for logs and error messages.
    pub(crate) fn describe(&self, args: &[&OsStr]) -> String {
        let mut line = OsString::from(self.kind.as_str());
        line.push(" --root ");
        line.push(&self.state_root);
        for arg in args {
            line.push(" ");
            line.push(arg);
        }
        line.to_string_lossy().into_owned()
    }

    pub(crate) fn failed(&self, args: &[&OsStr], output: &Output) -> RuntimeError {
        RuntimeError::CommandFailed {
            command: self.describe(args),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }
    }

    pub(crate) fn not_found(&self, id: &str) -> RuntimeError {
        RuntimeError::NotFound {
            id: id.to_owned(),
            root: self.state_root.clone(),
        }
    }
}

/// Container ids become runtime arguments and directory names: refuse
/// anything that could be taken for an option or a path.
pub(crate) fn validate_id(id: &str) -> Result<(), RuntimeError> {
    let ok = (1..=128).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        return Ok(());
    }
    Err(RuntimeError::invalid(
        "container id",
        format!("{id:?}: use 1 to 128 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit"),
    ))
}

/// A private temporary directory for pid and log files of one invocation.
pub(crate) fn scratch_dir(purpose: &str) -> Result<tempfile::TempDir, RuntimeError> {
    tempfile::Builder::new()
        .prefix(&format!("roost-{purpose}-"))
        .tempdir()
        .map_err(|err| RuntimeError::io("cannot create a temporary directory", err))
}

/// Reads a pid file written by the runtime; `None` if it was never written.
pub(crate) fn read_pid_file(path: &Path) -> Result<Option<u32>, RuntimeError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(RuntimeError::io(
                format!("cannot read {}", path.display()),
                err,
            ))
        }
    };
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| RuntimeError::BadOutput {
            command: format!("pid file {}", path.display()),
            reason: format!("{:?} is not a pid", text.trim()),
        })
}

/// The error messages from a runtime's `--log-format json` log, or the raw
/// log if it is not JSON lines.
fn runtime_log_errors(path: &Path) -> String {
    #[derive(Deserialize)]
    struct Line {
        msg: String,
    }
    let Ok(text) = fs::read_to_string(path) else {
        return String::from("(the runtime wrote no log)");
    };
    let messages: Vec<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Line>(line).ok())
        .map(|line| line.msg)
        .collect();
    if messages.is_empty() {
        text.trim().to_owned()
    } else {
        messages.join("; ")
    }
}

fn parse_state(stdout: &[u8]) -> Result<ContainerState, String> {
    #[derive(Deserialize)]
    struct Raw {
        status: String,
        #[serde(default)]
        pid: i64,
    }
    let raw: Raw =
        serde_json::from_slice(stdout).map_err(|err| format!("invalid state JSON: {err}"))?;
    let status = match raw.status.as_str() {
        "creating" => ContainerStatus::Creating,
        "created" => ContainerStatus::Created,
        "running" => ContainerStatus::Running,
        "paused" => ContainerStatus::Paused,
        "stopped" => ContainerStatus::Stopped,
        other => return Err(format!("unknown container status {other:?}")),
    };
    let pid = match status {
        ContainerStatus::Stopped => None,
        _ => u32::try_from(raw.pid).ok().filter(|&pid| pid > 0),
    };
    Ok(ContainerState { status, pid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_round_trips_and_lists_allowed_values() {
        for kind in OciRuntimeKind::ALL {
            assert_eq!(
                kind.to_string().parse::<OciRuntimeKind>().expect("parse"),
                kind
            );
        }
        let err = "runsc".parse::<OciRuntimeKind>().expect_err("unsupported");
        assert!(
            err.to_string().contains("allowed values: crun, runc"),
            "{err}"
        );
    }

    #[test]
    fn ids_that_look_like_options_or_paths_are_rejected() {
        for bad in ["", "-rf", "../x", "a/b", "a b", ".hidden"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        validate_id("0123456789abcd").expect("fly-style id");
    }

    #[test]
    fn parses_runtime_state() {
        let state = parse_state(br#"{"ociVersion":"1.0.2","id":"x","pid":42,"status":"running"}"#)
            .expect("state");
        assert_eq!(
            state,
            ContainerState {
                status: ContainerStatus::Running,
                pid: Some(42)
            }
        );
        let stopped = parse_state(br#"{"pid":42,"status":"stopped"}"#).expect("state");
        assert_eq!(stopped.pid, None);
        assert!(parse_state(br#"{"pid":1,"status":"weird"}"#).is_err());
    }

    #[test]
    fn extracts_messages_from_json_runtime_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        fs::write(
            &path,
            "{\"msg\":\"first\",\"level\":\"error\"}\n{\"level\":\"error\",\"msg\":\"second\"}\n",
        )
        .expect("write");
        assert_eq!(runtime_log_errors(&path), "first; second");
    }
}
