//! A tunnel's bytes, moved between its two TCP connections by the kernel:
//! `splice(2)` from one socket into a pipe and from the pipe into the
//! other socket, so that they are never copied through the proxy's memory.
//! A copy loop in user space costs two copies per byte and caps a CONNECT
//! download at about a third of what the host reaches directly; the bytes
//! are still counted (splice says how many it moved) and the idle bound
//! still holds.

use crate::ledger::Tally;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Most one splice is asked to move. A pipe holds 64 KiB (16 pages), so
/// that is what a splice moves at most. Pipes are left at that size:
/// growing one (`F_SETPIPE_SZ` to 1 MiB) cost about 1 ms more per tunnel
/// in the benchmark, and bought no measurable throughput.
const SPLICE_BYTES: usize = 1024 * 1024;

/// Moves bytes both ways between `client` and `upstream` until both
/// directions have ended (each end's EOF is passed on as a half close),
/// one fails, or no byte has moved either way for `idle`. `early` are
/// bytes the client sent before the tunnel opened; they go first. Bytes
/// toward the upstream count as sent, the others as received.
pub(crate) async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    early: &[u8],
    tally: &Tally,
    idle: Duration,
) -> io::Result<()> {
    let mut upstream = upstream;
    if !early.is_empty() {
        upstream.write_all(early).await?;
        tally.sent(early.len());
    }
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let moved = |n: usize| {
        last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        n
    };
    let out = Pipe::new()?;
    let back = Pipe::new()?;
    let out = out.carry(&client, &upstream, |n| tally.sent(moved(n)));
    let back = back.carry(&upstream, &client, |n| tally.received(moved(n)));
    let both = async { tokio::try_join!(out, back).map(|_| ()) };
    let watchdog = async {
        loop {
            let quiet_since = started + Duration::from_millis(last.load(Ordering::Relaxed));
            if quiet_since.elapsed() >= idle {
                return io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no bytes either way for {idle:?}"),
                );
            }
            tokio::time::sleep_until(quiet_since + idle).await;
        }
    };
    tokio::select! {
        done = both => done,
        err = watchdog => Err(err),
    }
}

/// One direction's pipe: read end, write end.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors we own.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe { read, write })
    }

    /// Moves `from`'s bytes to `to` until `from` ends, then half-closes
    /// `to`; `count` sees every chunk that reached `to`.
    async fn carry(
        self,
        from: &TcpStream,
        to: &TcpStream,
        count: impl Fn(usize),
    ) -> io::Result<()> {
        loop {
            let mut in_pipe = from
                .async_io(Interest::READABLE, || {
                    splice(from.as_raw_fd(), self.write.as_raw_fd(), SPLICE_BYTES)
                })
                .await?;
            if in_pipe == 0 {
                // SAFETY: shutdown of a socket we hold a reference to.
                if unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) } != 0 {
                    let err = io::Error::last_os_error();
                    if err.raw_os_error() != Some(libc::ENOTCONN) {
                        return Err(err);
                    }
                }
                return Ok(());
            }
            while in_pipe > 0 {
                let n = to
                    .async_io(Interest::WRITABLE, || {
                        splice(self.read.as_raw_fd(), to.as_raw_fd(), in_pipe)
                    })
                    .await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                in_pipe -= n;
                count(n);
            }
        }
    }
}

/// One non-blocking splice of up to `len` bytes; `WouldBlock` when the
/// socket side is not ready (which clears tokio's readiness for it).
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: both descriptors are open for the duration of the call and
    // no offsets are passed (sockets and pipes have none).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
