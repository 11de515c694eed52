//! Stream wrappers: byte counting on upstream connections, and an idle
//! bound on client connections. Both are one wrapper, [`Watched`], that
//! shows every read and write outcome to a [`Watcher`].

use crate::ledger::Tally;
use bytes::{Buf, Bytes};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a [`Watched`] stream tells about its reads and writes.
pub(crate) trait Watcher: Unpin {
    /// Sees the outcome of one read or write (the bytes it moved) and
    /// answers the outcome the stream's user gets.
    fn watch(
        &mut self,
        cx: &mut Context<'_>,
        direction: Direction,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// A stream whose reads and writes a [`Watcher`] sees.
pub(crate) struct Watched<S, W> {
    inner: S,
    watcher: W,
    /// Bytes read from `inner` before it was wrapped, which reads answer
    /// first: a request head the proxy read itself before handing the
    /// connection to hyper.
    unread: Bytes,
}

/// An upstream connection whose bytes are counted: written = sent,
/// read = received.
pub(crate) type Metered<S> = Watched<S, Tally>;

/// A client connection that fails with `TimedOut` once no byte has moved
/// either way for its bound: a silent client, or a tunnel both ends of
/// which went quiet, gives its machine's connection slot back.
pub(crate) type Idle<S> = Watched<S, IdleClock>;

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, tally: Tally) -> Metered<S> {
        Watched {
            inner,
            watcher: tally,
            unread: Bytes::new(),
        }
    }

    /// The stream and its tally, for a tunnel that counts by itself.
    pub(crate) fn into_parts(self) -> (S, Tally) {
        (self.inner, self.watcher)
    }
}

impl<S> Idle<S> {
    /// `inner`, whose reads answer `unread` first.
    pub(crate) fn new(inner: S, unread: Bytes, timeout: Duration) -> Idle<S> {
        Watched {
            inner,
            watcher: IdleClock::new(timeout),
            unread,
        }
    }

    /// The stream and what is left unread of the bytes it started with,
    /// for a tunnel that keeps the idle bound by itself.
    pub(crate) fn into_inner(self) -> (S, Bytes) {
        (self.inner, self.unread)
    }
}

impl Watcher for Tally {
    fn watch(
        &mut self,
        _cx: &mut Context<'_>,
        direction: Direction,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = polled {
            match direction {
                Direction::Read => self.received(n),
                Direction::Write => self.sent(n),
            }
        }
        polled
    }
}

/// When a byte last moved, and a timer that fires `timeout` after that.
pub(crate) struct IdleClock {
    timeout: Duration,
    /// The timer is moved forward lazily, only when it fires early, so
    /// each read or write costs a clock read.
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl IdleClock {
    fn new(timeout: Duration) -> IdleClock {
        IdleClock {
            timeout,
            last: Instant::now(),
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// After a pending read or write: whether the connection is idle past
    /// its bound (the timer, moved forward if bytes moved since it was set,
    /// wakes the task otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = self.last + self.timeout;
            if deadline <= Instant::now() {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl Watcher for IdleClock {
    /// Progress moves the clock; a pending operation past the bound fails.
    fn watch(
        &mut self,
        cx: &mut Context<'_>,
        _direction: Direction,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no bytes either way for {:?}", self.timeout),
            ))),
            Poll::Pending => Poll::Pending,
            ready => {
                self.last = Instant::now();
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin, W: Watcher> AsyncRead for Watched<S, W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner)
            .poll_read(cx, buf)
            .map_ok(|()| buf.filled().len() - before);
        this.watcher
            .watch(cx, Direction::Read, polled)
            .map_ok(|_| ())
    }
}

impl<S: AsyncWrite + Unpin, W: Watcher> AsyncWrite for Watched<S, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watcher.watch(cx, Direction::Write, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watcher.watch(cx, Direction::Write, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out_a_busy_one_does_not() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut idle = Idle::new(client, Bytes::new(), Duration::from_secs(10));
        let mut byte = [0u8; 1];
        // Bytes every 6 s keep it alive past the 10 s bound...
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            server.write_all(b"x").await.unwrap();
            idle.read_exact(&mut byte).await.unwrap();
        }
        // ...silence ends it 10 s after the last byte.
        let started = Instant::now();
        let err = idle.read(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
