//! Byte pipes for upgraded HTTP connections (WebSocket) and raw TCP
//! services, closed after a period without traffic either way.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Records the time of the last byte moved through it.
struct Active<T> {
    inner: T,
    last_ms: Arc<AtomicU64>,
    epoch: Instant,
}

impl<T> Active<T> {
    fn mark(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.mark();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.mark();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Copies both ways until both sides close, an error, or `idle` passes
/// without a byte in either direction. Returns bytes copied (a→b, b→a).
pub(crate) async fn splice<A, B>(a: A, b: B, idle: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let epoch = Instant::now();
    let last_ms = Arc::new(AtomicU64::new(0));
    let mut a = Active {
        inner: a,
        last_ms: last_ms.clone(),
        epoch,
    };
    let mut b = Active {
        inner: b,
        last_ms: last_ms.clone(),
        epoch,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let last = Duration::from_millis(last_ms.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::from_std(epoch + last + idle);
        tokio::select! {
            result = &mut copy => return result,
            _ = tokio::time::sleep_until(deadline) => {
                let last = Duration::from_millis(last_ms.load(Ordering::Relaxed));
                if epoch.elapsed() >= last + idle {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no traffic for {idle:?} (idle timeout)"),
                    ));
                }
            }
        }
    }
}
