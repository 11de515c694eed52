//! Watching and inspecting a machine's processes from the host.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::unistd::{sysconf, SysconfVar};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::RuntimeError;

/// Waits until process `pid` exits, without polling: a pidfd becomes
/// readable when the process terminates, and tokio's reactor watches it.
///
/// Works for any pid. The exit code (128 + signal for a killed process) is
/// returned only if `pid` is a child of this process, e.g. a machine's init
/// after [`set_child_subreaper`]; waiting also reaps it. `Ok(None)` means the
/// process ended but its status belongs to another parent, or it was gone
/// already.
pub async fn wait_for_exit(pid: u32) -> Result<Option<i32>, RuntimeError> {
    let raw_pid = libc::pid_t::try_from(pid)
        .map_err(|_| RuntimeError::invalid("pid", format!("{pid} is out of range")))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(None);
        }
        return Err(RuntimeError::io(format!("pidfd_open({pid})"), err));
    }
    let fd = i32::try_from(fd)
        .map_err(|_| RuntimeError::invalid("pidfd", format!("{fd} is not a file descriptor")))?;
    // SAFETY: pidfd_open just returned this fd and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged
    // until the AsyncFd is dropped.
    let watched = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(|err| RuntimeError::io(format!("cannot watch pidfd of {pid}"), err.into()))?;
    let _ready = watched
        .readable()
        .await
        .map_err(|err| RuntimeError::io(format!("cannot wait for pid {pid}"), err))?;
    reap(watched.get_ref(), pid)
}

/// Collects the exit status of an exited child through its pidfd.
fn reap(pidfd: &OwnedFd, pid: u32) -> Result<Option<i32>, RuntimeError> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let id = libc::id_t::try_from(pidfd.as_raw_fd())
        .map_err(|_| RuntimeError::invalid("pidfd", "negative file descriptor"))?;
    // SAFETY: `info` is a valid, writable siginfo_t; the fd is open.
    let rc = unsafe { libc::waitid(libc::P_PIDFD, id, &mut info, libc::WEXITED | libc::WNOHANG) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ECHILD) {
            return Ok(None);
        }
        return Err(RuntimeError::io(format!("waitid for pid {pid}"), err));
    }
    // SAFETY: waitid filled `info` for a SIGCHLD, whose status field is valid.
    let (code, status) = unsafe { (info.si_code, info.si_status()) };
    match code {
        libc::CLD_EXITED => Ok(Some(status)),
        libc::CLD_KILLED | libc::CLD_DUMPED => Ok(Some(128 + status)),
        _ => Ok(None),
    }
}

/// Makes this process the reaper of orphaned descendants.
///
/// A machine's init is forked by crun/runc, which exits right away; with
/// this set, the init is re-parented to the roost daemon instead of the
/// host's pid 1, so [`wait_for_exit`] can collect its exit code.
pub fn set_child_subreaper() -> Result<(), RuntimeError> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(RuntimeError::io(
            "prctl(PR_SET_CHILD_SUBREAPER)",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Reaps the zombies inside machines' pid namespaces that were left to
/// this process, the subreaper, and that nobody else waits for.
///
/// A runtime's `exec` forks a process into the machine's pid namespace;
/// when the command cannot start (no such program), that process can die
/// after its parent, and is re-parented to roost. Unreaped, it keeps the
/// namespace alive: the machine's init, once killed, never finishes
/// exiting, and the machine cannot be stopped. Only zombies that are
/// children of this process, inside a nested pid namespace, and not the
/// namespace's init (pid 1 there, which [`wait_for_exit`] collects) are
/// taken; no other code waits for those. Returns how many were reaped.
pub fn reap_orphans() -> usize {
    let me = std::process::id().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut reaped = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if is_orphan_in_a_machine(&status, &me) {
            // SAFETY: `info` is a valid, writable siginfo_t; P_PID takes a pid.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let id = libc::id_t::try_from(pid).unwrap_or_default();
            // SAFETY: as above; WNOHANG never blocks.
            if unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOHANG) }
                == 0
            {
                reaped += 1;
            }
        }
    }
    if reaped > 0 {
        tracing::debug!(reaped, "reaped processes orphaned inside machines");
    }
    reaped
}

/// Whether `/proc/PID/status` text describes a zombie child of `parent`
/// inside a nested pid namespace that is not that namespace's init.
fn is_orphan_in_a_machine(status: &str, parent: &str) -> bool {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    };
    let zombie = field("State:").is_some_and(|state| state.starts_with('Z'));
    let child = field("PPid:") == Some(parent);
    let pids: Vec<&str> = field("NSpid:").map_or_else(Vec::new, |p| p.split_whitespace().collect());
    zombie && child && pids.len() > 1 && pids.last() != Some(&"1")
}

/// One process of a machine, as shown by `ps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Pid inside the machine's pid namespace.
    pub pid: i32,
    /// Command line, arguments separated by spaces (`[comm]` if empty).
    pub command: String,
    /// Working directory as seen inside the machine.
    pub directory: String,
    /// Resident memory in bytes.
    pub rss: u64,
    /// CPU time used (user + system) in milliseconds.
    pub cpu: u64,
    /// System (kernel) CPU time in milliseconds.
    pub stime: u64,
    /// Wall-clock time since the process started, in milliseconds.
    pub rtime: u64,
    /// Listening TCP sockets and bound UDP sockets: (`tcp`|`udp`, `ip:port`).
    pub listen_sockets: Vec<(String, String)>,
}

/// Lists the processes in the pid namespace of a machine whose init has
/// host pid `init_pid`, read from the host's `/proc`.
pub fn processes(init_pid: u32) -> Result<Vec<ProcessInfo>, RuntimeError> {
    let proc = Path::new("/proc");
    let init_dir = proc.join(init_pid.to_string());
    let namespace = fs::read_link(init_dir.join("ns/pid")).map_err(|err| {
        RuntimeError::io(format!("cannot inspect machine init (pid {init_pid})"), err)
    })?;
    let clock = Clock::read()?;
    let sockets = listening_sockets(&init_dir.join("net"));
    let entries = fs::read_dir(proc).map_err(|err| RuntimeError::io("cannot read /proc", err))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(host_pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = entry.path();
        if fs::read_link(dir.join("ns/pid")).ok().as_ref() != Some(&namespace) {
            continue;
        }
        // Processes may exit while we read them; skip those.
        if let Some(info) = process_info(&dir, &clock, &sockets) {
            tracing::trace!(host_pid, pid = info.pid, "machine process");
            found.push(info);
        }
    }
    found.sort_by_key(|p| p.pid);
    Ok(found)
}

/// Conversion factors for `/proc/<pid>/stat` fields.
struct Clock {
    ticks_per_second: u64,
    page_size: u64,
    uptime_ms: u64,
}

impl Clock {
    fn read() -> Result<Clock, RuntimeError> {
        let conf = |var, name: &str| {
            sysconf(var)
                .ok()
                .flatten()
                .and_then(|v| u64::try_from(v).ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    RuntimeError::io(format!("sysconf({name})"), io::Error::other("unavailable"))
                })
        };
        let uptime = fs::read_to_string("/proc/uptime")
            .map_err(|err| RuntimeError::io("cannot read /proc/uptime", err))?;
        let seconds: f64 = uptime
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                RuntimeError::io(
                    "cannot parse /proc/uptime",
                    io::Error::other(uptime.clone()),
                )
            })?;
        Ok(Clock {
            ticks_per_second: conf(SysconfVar::CLK_TCK, "CLK_TCK")?,
            page_size: conf(SysconfVar::PAGE_SIZE, "PAGE_SIZE")?,
            uptime_ms: (seconds * 1000.0) as u64,
        })
    }

    fn ticks_to_ms(&self, ticks: u64) -> u64 {
        ticks.saturating_mul(1000) / self.ticks_per_second
    }
}

fn process_info(
    dir: &Path,
    clock: &Clock,
    sockets: &HashMap<u64, (String, String)>,
) -> Option<ProcessInfo> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    // Fields after the parenthesised comm, which may itself contain spaces.
    let (comm_part, rest) = stat.rsplit_once(')')?;
    let comm = comm_part.split_once('(')?.1;
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Indexes are stat(5) field numbers minus 4 (pid, comm, state skipped).
    let utime = *fields.get(10)?;
    let stime = *fields.get(11)?;
    let start = *fields.get(18)?;
    let rss_pages = *fields.get(20)?;

    let status = fs::read_to_string(dir.join("status")).ok()?;
    let pid = status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()?;
    let cmdline = fs::read(dir.join("cmdline")).ok()?;
    let command = if cmdline.is_empty() {
        format!("[{comm}]")
    } else {
        cmdline
            .split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let directory = fs::read_link(dir.join("cwd"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let listen_sockets = socket_inodes(&dir.join("fd"))
        .into_iter()
        .filter_map(|inode| sockets.get(&inode).cloned())
        .collect();
    Some(ProcessInfo {
        pid,
        command,
        directory,
        rss: rss_pages.saturating_mul(clock.page_size),
        cpu: clock.ticks_to_ms(utime + stime),
        stime: clock.ticks_to_ms(stime),
        rtime: clock.uptime_ms.saturating_sub(clock.ticks_to_ms(start)),
        listen_sockets,
    })
}

/// Inodes of the sockets a process holds open.
fn socket_inodes(fd_dir: &Path) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(fd_dir) else {
        return Vec::new();
    };
    let mut inodes: Vec<u64> = entries
        .flatten()
        .filter_map(|entry| fs::read_link(entry.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?.to_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    inodes.sort_unstable();
    inodes.dedup();
    inodes
}

/// Listening sockets of a network namespace, by inode, read through
/// `/proc/<pid>/net` of a process inside it.
fn listening_sockets(net_dir: &Path) -> HashMap<u64, (String, String)> {
    /// `TCP_LISTEN` and, for UDP, `TCP_CLOSE` (bound, not connected).
    const TABLES: [(&str, &str, &str); 4] = [
        ("tcp", "tcp", "0A"),
        ("tcp6", "tcp", "0A"),
        ("udp", "udp", "07"),
        ("udp6", "udp", "07"),
    ];
    let mut sockets = HashMap::new();
    for (file, proto, listen_state) in TABLES {
        let Ok(table) = fs::read_to_string(net_dir.join(file)) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            if *state != listen_state {
                continue;
            }
            if let (Some(address), Ok(inode)) = (parse_address(local), inode.parse()) {
                sockets.insert(inode, (proto.to_owned(), address));
            }
        }
    }
    sockets
}

/// Parses `/proc/net/{tcp,udp}[6]` addresses (`0100007F:1F90`): the IP is
/// printed as native-endian 32-bit words, the port as a plain hex number.
fn parse_address(field: &str) -> Option<String> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<[u8; 4]> = (0..ip.len() / 8)
        .map(|i| {
            u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
                .ok()
                .map(u32::to_ne_bytes)
        })
        .collect::<Option<_>>()?;
    match words.as_slice() {
        [a] => Some(format!("{}:{port}", Ipv4Addr::from(*a))),
        [a, b, c, d] => {
            let bytes: Vec<u8> = [a, b, c, d].into_iter().flatten().copied().collect();
            let bytes: [u8; 16] = bytes.try_into().ok()?;
            Some(format!("[{}]:{port}", Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_zombie_children_inside_a_machine_but_its_init_are_orphans() {
        let status = |state: &str, ppid: u32, nspid: &str| {
            format!("Name:\tcrun\nState:\t{state}\nPPid:\t{ppid}\nNSpid:\t{nspid}\n")
        };
        // A zombie child in a machine; then running, another parent's, the
        // host's own, and a machine's init.
        let cases = [
            ("Z (zombie)", 7, "4546\t3", true),
            ("S (sleeping)", 7, "4546\t3", false),
            ("Z (zombie)", 8, "4546\t3", false),
            ("Z (zombie)", 7, "4546", false),
            ("Z (zombie)", 7, "4539\t1", false),
        ];
        for (state, ppid, nspid, orphan) in cases {
            let text = status(state, ppid, nspid);
            assert_eq!(is_orphan_in_a_machine(&text, "7"), orphan, "{text}");
        }
    }

    #[test]
    fn parses_proc_net_addresses() {
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(
            parse_address(&format!("{v4:08X}:1F90")).as_deref(),
            Some("127.0.0.1:8080")
        );
        let one = u32::from_ne_bytes([0, 0, 0, 1]);
        assert_eq!(
            parse_address(&format!("000000000000000000000000{one:08X}:0050")).as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(parse_address("zz:1"), None);
    }

    #[tokio::test]
    #[expect(clippy::zombie_processes, reason = "wait_for_exit reaps the child")]
    async fn wait_for_exit_reports_the_exit_code_of_a_child() {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .expect("spawn sh");
        let code = wait_for_exit(child.id()).await.expect("wait");
        assert_eq!(code, Some(7));
    }

    #[tokio::test]
    async fn wait_for_exit_of_a_missing_process_is_none() {
        assert_eq!(wait_for_exit(i32::MAX as u32).await.expect("wait"), None);
    }
}
