//! Killing every process of a machine through its cgroup.
//!
//! Signalling the container's init is not enough: a fork bomb forks faster
//! than the kernel tears down its pid namespace, and processes stuck at the
//! machine's memory limit leave the runtime's `delete` with a cgroup it
//! cannot remove. The cgroup holds every process of the machine, whatever
//! it forked. Where the host has cgroup v2's `cgroup.kill`, one write makes
//! the kernel kill them all. Otherwise (v1 controllers, as on hybrid hosts)
//! the v1 freezer stops every process where it is, so none can fork or exit
//! (and free its pid for reuse) while the pids are read and sent SIGKILL;
//! thawing lets them die. Both are repeated until the cgroup is empty.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::host::{self, CgroupMode};
use crate::RuntimeError;

/// How long to wait for a freeze to take effect before killing anyway:
/// signals sent to freezing processes are delivered when they thaw.
const FREEZE_WAIT: Duration = Duration::from_millis(500);

/// The pause between two rounds, and between two looks at a freezing cgroup.
const ROUND_PAUSE: Duration = Duration::from_millis(10);

/// Kills every process in cgroup `name` (relative to the cgroup root, as
/// in a bundle's `cgroupsPath`) and waits until it holds none, for at most
/// `timeout`. A cgroup that does not exist holds nothing.
pub async fn kill_all(name: &str, timeout: Duration) -> Result<(), RuntimeError> {
    let cgroup = MachineCgroup::find(name)?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = cgroup.processes()?;
        if left.is_empty() {
            // A process of the machine that died as roost's orphan has left
            // the cgroup but, unreaped, would keep its pid namespace alive.
            let _reaped = crate::process::reap_orphans();
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(RuntimeError::Unkillable {
                cgroup: name.to_owned(),
                left: left.len(),
                waited: timeout,
            });
        }
        cgroup.kill_round().await?;
        tokio::time::sleep(ROUND_PAUSE).await;
    }
}

/// The directories of one cgroup that [`kill_all`] uses.
struct MachineCgroup {
    /// The v2 cgroup with a `cgroup.kill`, if the host has one for it.
    v2_kill: Option<PathBuf>,
    /// The v1 freezer cgroup, if the host has one for it.
    v1_freezer: Option<PathBuf>,
}

impl MachineCgroup {
    fn find(name: &str) -> Result<MachineCgroup, RuntimeError> {
        let root = Path::new(host::CGROUP_ROOT);
        let v2_root = match host::cgroup_mode()? {
            CgroupMode::Unified => Some(root.to_owned()),
            CgroupMode::Hybrid => Some(root.join("unified")),
            CgroupMode::Legacy => None,
        };
        let name = name.trim_start_matches('/');
        Ok(MachineCgroup {
            v2_kill: v2_root
                .map(|v2| v2.join(name))
                .filter(|dir| dir.join("cgroup.kill").exists()),
            v1_freezer: Some(root.join("freezer").join(name))
                .filter(|dir| dir.join("freezer.state").exists()),
        })
    }

    /// The processes still in the cgroup, by every hierarchy it is in (a
    /// runtime that leaves the v2 hierarchy alone, as crun on a hybrid
    /// host, puts them in the v1 one only).
    fn processes(&self) -> Result<Vec<Pid>, RuntimeError> {
        let mut pids = Vec::new();
        for dir in self.v2_kill.iter().chain(&self.v1_freezer) {
            pids.extend(read_procs(dir)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// One attempt at killing everything: `cgroup.kill`, or freeze, SIGKILL
    /// every process, thaw (also when the kill failed, or the machine would
    /// stay frozen).
    async fn kill_round(&self) -> Result<(), RuntimeError> {
        if let Some(dir) = &self.v2_kill {
            write(&dir.join("cgroup.kill"), "1")?;
        }
        let Some(freezer) = &self.v1_freezer else {
            return Ok(());
        };
        let state = freezer.join("freezer.state");
        write(&state, "FROZEN")?;
        let killed = kill_frozen(freezer, &state).await;
        write(&state, "THAWED")?;
        killed
    }
}

/// Sends SIGKILL to every process of the v1 `freezer` cgroup once it is
/// frozen (or after [`FREEZE_WAIT`]): the pids are read under the freeze,
/// so none of them can have exited and been reused meanwhile.
async fn kill_frozen(freezer: &Path, state: &Path) -> Result<(), RuntimeError> {
    let frozen_by = Instant::now() + FREEZE_WAIT;
    while read(state)?.trim() != "FROZEN" && Instant::now() < frozen_by {
        tokio::time::sleep(ROUND_PAUSE).await;
    }
    let pids = read_procs(freezer)?;
    tracing::debug!(cgroup = %freezer.display(), processes = pids.len(), "killing a frozen cgroup");
    for pid in pids {
        // A process that is gone already is what we want.
        let _already_gone = kill(pid, Signal::SIGKILL);
    }
    Ok(())
}

/// The pids in `dir/cgroup.procs`; none if the cgroup is gone.
fn read_procs(dir: &Path) -> Result<Vec<Pid>, RuntimeError> {
    let text = match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(RuntimeError::io(
                format!("cannot read {}/cgroup.procs", dir.display()),
                err,
            ))
        }
    };
    Ok(text
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .map(Pid::from_raw)
        .collect())
}

/// A cgroup file's contents; empty if the cgroup is gone.
fn read(path: &Path) -> Result<String, RuntimeError> {
    match fs::read_to_string(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        other => {
            other.map_err(|err| RuntimeError::io(format!("cannot read {}", path.display()), err))
        }
    }
}

/// Writes a cgroup file; a cgroup that is gone has nothing left to do.
fn write(path: &Path, value: &str) -> Result<(), RuntimeError> {
    match fs::write(path, value) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|err| {
            RuntimeError::io(format!("cannot write {value} to {}", path.display()), err)
        }),
    }
}
