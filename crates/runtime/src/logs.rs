//! Machine logs, bounded while they are written.
//!
//! A machine's main process writes its stdout and stderr (or its terminal)
//! into a pipe whose reader is a relay: a process of its own, in its own
//! process group, not a thread of the daemon. So the log keeps being
//! written while roost restarts, and the relay ends by itself at end of
//! file, when the machine's last process holding the pipe is gone.
//!
//! The relay appends what it reads to `log`. When the next write would
//! take `log` past the bound, it makes `log` into `log.1` (replacing the
//! older one) and starts a new `log`, without a moment where `log` is missing: a machine's logs take at most twice
//! the bound on disk, nothing is ever read back, and the daemon's memory
//! does not depend on what machines print. A machine that prints faster
//! than the relay writes is slowed down by the full pipe, never buffered.
//!
//! While it runs, the relay holds an exclusive `flock` on the log's
//! directory: a relay for the next run of the machine waits until the
//! previous one has written everything, and [`wait_for_relay`] learns that
//! a stopped machine's relay has ended, whichever process started it.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::RuntimeError;

/// Size of one read from the machine's output: the relay's only buffer.
const CHUNK: usize = 64 * 1024;

/// The program that relays machines' output into their logs, and the
/// bound it keeps them to.
///
/// The program is run as `program args... LOG MAX_BYTES` with the
/// machine's output as its stdin, and must do what [`relay_main`] does
/// (the `roost` binary and this crate's `roost-log-relay` call it).
#[derive(Debug, Clone)]
pub struct LogRelay {
    program: PathBuf,
    args: Vec<OsString>,
    max_bytes: u64,
}

impl LogRelay {
    /// A relay run as `program args...`, rotating logs at `max_bytes`.
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
        max_bytes: u64,
    ) -> LogRelay {
        LogRelay {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            max_bytes,
        }
    }

    /// Starts the relay copying `input` into `log` and leaves it running:
    /// it outlives the caller. tokio reaps it if it exits while the caller
    /// still runs.
    pub(crate) fn spawn(&self, input: impl Into<Stdio>, log: &Path) -> Result<(), RuntimeError> {
        let mut relay = tokio::process::Command::new(&self.program);
        relay
            .args(&self.args)
            .arg(log)
            .arg(self.max_bytes.to_string())
            .stdin(input)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        relay.spawn().map(drop).map_err(|err| {
            RuntimeError::io(
                format!("cannot start the log relay {}", self.program.display()),
                err,
            )
        })
    }
}

/// The rotated log that precedes `log`: `log.1`.
pub fn rotated_path(log: &Path) -> PathBuf {
    sibling(log, "1")
}

/// Waits until the relay writing `log` has ended (its machine's processes
/// are gone and it has written their last output), for at most `timeout`.
/// Returns whether it ended; true when there is no relay or no directory.
pub async fn wait_for_relay(log: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let Ok(mut dir) = File::open(log_dir(log)) else {
        return true;
    };
    loop {
        match Flock::lock(dir, FlockArg::LockSharedNonblock) {
            Ok(_unlocked_on_drop) => return true,
            Err((unlocked, _held_by_a_relay)) => dir = unlocked,
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The directory holding `log`, which its relay locks.
fn log_dir(log: &Path) -> &Path {
    match log.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The relay program's main: `LOG MAX_BYTES` as arguments, the machine's
/// output on stdin. Runs until end of file.
pub fn relay_main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    let parsed = match args.as_slice() {
        [log, max] => max
            .to_str()
            .and_then(|max| max.parse::<u64>().ok())
            .map(|max| (Path::new(log), max)),
        _ => None,
    };
    let Some((log, max_bytes)) = parsed else {
        eprintln!("usage: LOG MAX_BYTES, with the output to relay on stdin");
        return ExitCode::from(2);
    };
    match relay(&mut io::stdin().lock(), log, max_bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cannot relay into {}: {err}", log.display());
            ExitCode::FAILURE
        }
    }
}

/// Copies `input` into `log` until end of file, rotating `log` to
/// `log.1` before it would pass `max_bytes`. A terminal whose last
/// holder closed it (EIO) is end of file. Output that cannot be written
/// (a full disk) is dropped, so the machine is never blocked by its log.
pub fn relay(input: &mut impl Read, log: &Path, max_bytes: u64) -> io::Result<()> {
    let dir = File::open(log_dir(log))?;
    let _held_until_the_relay_ends =
        Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, errno)| io::Error::from(errno))?;
    let mut current = BoundedLog::open(log, max_bytes)?;
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if err.raw_os_error() == Some(libc::EIO) => return Ok(()),
            Err(err) => return Err(err),
        };
        current.write(&chunk[..n]);
    }
}

/// The log being written, with its size.
struct BoundedLog<'a> {
    path: &'a Path,
    file: File,
    size: u64,
    max_bytes: u64,
}

impl<'a> BoundedLog<'a> {
    /// Opens `path` for appending, rotating it first if it is at the bound
    /// already (a log left by the machine's previous run).
    fn open(path: &'a Path, max_bytes: u64) -> io::Result<BoundedLog<'a>> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let mut log = BoundedLog {
            path,
            file,
            size,
            max_bytes,
        };
        if log.size >= max_bytes {
            log.rotate()?;
        }
        Ok(log)
    }

    /// Appends `bytes`, rotating first if they would pass the bound. A
    /// failed write or rotation drops `bytes` (there is no one to tell:
    /// the relay's own output goes nowhere); the next write tries again.
    /// A failed write may have written part of `bytes`, so they count
    /// towards the bound whatever happened.
    fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes && self.rotate().is_err()
        {
            return;
        }
        let _dropped_on_error = self.file.write_all(bytes);
        self.size = self.size.saturating_add(len);
    }

    /// Makes the log `log.1` (replacing the older one) and continues in a
    /// new, empty `log`. Every step is a link or a rename, so `log` exists
    /// at every instant: a reader never finds the machine without a log.
    /// For a moment `log.1` and `log` are the same file; readers skip the
    /// second name of one file.
    fn rotate(&mut self) -> io::Result<()> {
        let next = sibling(self.path, "next");
        let older = sibling(self.path, "1.next");
        for leftover in [&next, &older] {
            remove_if_present(leftover)?;
        }
        let file = open_append(&next)?;
        fs::hard_link(self.path, &older)?;
        fs::rename(&older, rotated_path(self.path))?;
        fs::rename(&next, self.path)?;
        self.file = file;
        self.size = 0;
        Ok(())
    }
}

/// `log.<suffix>` beside `log`: where a rotation prepares its files.
fn sibling(log: &Path, suffix: &str) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes what a rotation interrupted by a crash left behind.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Opens `path` for appending, creating it readable by its group only.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(path: &Path) -> u64 {
        fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn security_log_stays_bounded_and_keeps_the_newest_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        // 10 MiB of numbered lines through a 64 KiB bound.
        let text: String = (0..1_000_000).map(|i| format!("line {i:06}\n")).collect();
        relay(&mut text.as_bytes(), &log, 64 * 1024).expect("relay");
        assert!(size(&log) <= 64 * 1024, "log is {} bytes", size(&log));
        assert!(size(&rotated_path(&log)) <= 64 * 1024);
        let newest = fs::read_to_string(&log).expect("log");
        assert!(newest.ends_with("line 999999\n"), "{newest:.100}");
        let older = fs::read_to_string(rotated_path(&log)).expect("log.1");
        assert_eq!(
            format!("{older}{newest}"),
            text[text.len() - older.len() - newest.len()..],
            "log.1 then log are the last output, in order"
        );
    }

    #[test]
    fn a_reader_finds_the_log_at_every_instant_of_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        fs::write(&log, "").expect("write");
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut missing = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    missing += usize::from(File::open(&log).is_err());
                }
                missing
            });
            // About 10,000 rotations: 1 MiB of lines through a 100-byte bound.
            let text = "a line of about forty bytes, repeated.\n".repeat(25_000);
            relay(&mut text.as_bytes(), &log, 100).expect("relay");
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(reader.join().expect("reader"), 0, "log was missing");
        });
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "only log and log.1 are left: {names:?}");
    }

    #[test]
    fn a_log_at_the_bound_is_rotated_before_the_next_run_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        fs::write(&log, "previous run\n").expect("write");
        relay(&mut &b"this run\n"[..], &log, 8).expect("relay");
        assert_eq!(fs::read_to_string(&log).expect("log"), "this run\n");
        assert_eq!(
            fs::read_to_string(rotated_path(&log)).expect("log.1"),
            "previous run\n"
        );
        relay(&mut &b"appended\n"[..], &log, 1024).expect("relay");
        assert_eq!(
            fs::read_to_string(&log).expect("log"),
            "this run\nappended\n"
        );
    }

    #[tokio::test]
    async fn a_relay_is_waited_for_until_it_has_written_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        assert!(wait_for_relay(&log, Duration::ZERO).await, "no relay");
        let (mut output, mut writer) = io::pipe().expect("pipe");
        let relaying = {
            let log = log.clone();
            std::thread::spawn(move || relay(&mut output, &log, 1024))
        };
        writer.write_all(b"last words\n").expect("write");
        while !log.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!wait_for_relay(&log, Duration::from_millis(50)).await);
        drop(writer);
        assert!(wait_for_relay(&log, Duration::from_secs(10)).await);
        assert_eq!(fs::read_to_string(&log).expect("log"), "last words\n");
        relaying.join().expect("relay thread").expect("relay");
    }

    #[test]
    fn relay_main_refuses_arguments_it_cannot_use() {
        assert_eq!(relay_main([]), ExitCode::from(2));
        let bad = [OsString::from("/tmp/log"), OsString::from("lots")];
        assert_eq!(relay_main(bad), ExitCode::from(2));
    }
}
