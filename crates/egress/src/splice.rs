//! A tunnel's bytes, and a forwarded response's body, moved between two
//! TCP connections by the kernel: `splice(2)` from one socket into a pipe
//! and from the pipe into the other socket, so that they are never copied
//! through the proxy's memory. A copy loop in user space costs two copies
//! per byte and caps a CONNECT download at about a third of what the host
//! reaches directly; the bytes are still counted (splice says how many it
//! moved) and the idle bound still holds.

use crate::ledger::Tally;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Most one splice is asked to move. A pipe holds 64 KiB (16 pages), so
/// that is what a splice moves at most. Pipes are left at that size. In
/// the benchmark, 1 MiB pipes (`F_SETPIPE_SZ`) cut the proxy's own CPU per
/// 256 MiB download by a third (fewer splices and wake-ups) but lowered
/// throughput in paired runs: a direction fills its pipe, then drains it,
/// and the larger the batch, the longer each socket waits on the other.
/// Filling and draining at once (a full pipe told from an empty socket by
/// `FIONREAD`) bought nothing measurable either.
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
    let clock = Clock::new();
    let (out, back) = (Pipe::new()?, Pipe::new()?);
    let out = async {
        out.carry(&client, &upstream, u64::MAX, |n| tally.sent(clock.moved(n)))
            .await?;
        half_close(&upstream)
    };
    let back = async {
        back.carry(&upstream, &client, u64::MAX, |n| {
            tally.received(clock.moved(n))
        })
        .await?;
        half_close(&client)
    };
    clock
        .bounded(idle, async { tokio::try_join!(out, back).map(|_| ()) })
        .await
}

/// Moves a response body from `upstream` to `client`: `length` bytes, or
/// with `None` all until the upstream ends. Fails if the upstream ends a
/// body of known length early, or no byte has moved for `idle`. The
/// bytes count as received.
pub(crate) async fn body(
    upstream: &TcpStream,
    client: &TcpStream,
    length: Option<u64>,
    tally: &Tally,
    idle: Duration,
) -> io::Result<()> {
    let clock = Clock::new();
    let pipe = Pipe::new()?;
    let moved = pipe.carry(upstream, client, length.unwrap_or(u64::MAX), |n| {
        tally.received(clock.moved(n))
    });
    let left = clock.bounded(idle, moved).await?;
    match length {
        Some(_) if left > 0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the upstream ended the body {left} bytes short"),
        )),
        _ => Ok(()),
    }
}

/// When bytes last moved, for the idle bound.
struct Clock {
    started: Instant,
    /// Milliseconds from `started` to the last move.
    last: AtomicU64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            started: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// Notes that `n` bytes moved now; `n`.
    fn moved(&self, n: usize) -> usize {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        n
    }

    /// `work`, or `TimedOut` once no byte has moved for `idle`.
    async fn bounded<T>(
        &self,
        idle: Duration,
        work: impl std::future::Future<Output = io::Result<T>>,
    ) -> io::Result<T> {
        let watchdog = async {
            loop {
                let quiet_since =
                    self.started + Duration::from_millis(self.last.load(Ordering::Relaxed));
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
            done = work => done,
            err = watchdog => Err(err),
        }
    }
}

/// Passes an end's EOF on: no more bytes will be written to `to`.
fn half_close(to: &TcpStream) -> io::Result<()> {
    // SAFETY: shutdown of a socket we hold a reference to.
    if unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOTCONN) {
            return Err(err);
        }
    }
    Ok(())
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

    /// Moves `from`'s bytes to `to` until `from` ends or `limit` bytes
    /// have moved; `count` sees every chunk that reached `to`. Answers how
    /// many of `limit` are left (0 when it was reached).
    async fn carry(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        limit: u64,
        count: impl Fn(usize),
    ) -> io::Result<u64> {
        let mut left = limit;
        while left > 0 {
            let ask = usize::try_from(left).map_or(SPLICE_BYTES, |l| l.min(SPLICE_BYTES));
            let mut in_pipe = from
                .async_io(Interest::READABLE, || {
                    splice(from.as_raw_fd(), self.write.as_raw_fd(), ask)
                })
                .await?;
            if in_pipe == 0 {
                break;
            }
            left -= in_pipe as u64;
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
        Ok(left)
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
