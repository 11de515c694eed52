//! Response bodies the proxy sends to clients.
//!
//! An upstream body is passed through frame by frame: each chunk of an SSE
//! or chunked response is handed to hyper as it arrives, never collected.
//! The body owns the machine's [`InFlight`] guard, so the request counts as
//! load until the body ends, fails, times out or is dropped (client gone).

use crate::load::InFlight;
use crate::pool::Lease;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client-facing response body.
pub struct ProxyBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: Incoming,
        guard: Option<InFlight>,
        /// The machine connection, reused once the body has ended.
        lease: Option<Lease>,
        idle: Duration,
        /// Armed only once the upstream makes the body wait, so small
        /// responses that arrive at once never touch the timer wheel.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl ProxyBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
        ProxyBody {
            kind: Kind::Full(Some(bytes.into())),
        }
    }

    pub(crate) fn empty() -> ProxyBody {
        ProxyBody {
            kind: Kind::Full(None),
        }
    }

    /// Streams `inner`, ending it with an error after `idle` without a frame.
    pub(crate) fn upstream(
        inner: Incoming,
        guard: InFlight,
        lease: Option<Lease>,
        idle: Duration,
    ) -> ProxyBody {
        ProxyBody {
            kind: Kind::Upstream {
                inner,
                guard: Some(guard),
                lease,
                idle,
                timer: None,
            },
        }
    }
}

impl Drop for ProxyBody {
    /// A body hyper never polled (HEAD, 204, an empty body) still ended
    /// cleanly: its connection can serve the next request.
    fn drop(&mut self) {
        if let Kind::Upstream { inner, lease, .. } = &mut self.kind {
            if inner.is_end_stream() {
                if let Some(lease) = lease.take() {
                    lease.give_back();
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the machine sent nothing for {0:?} (the service's idle timeout); closing the response")]
struct IdleTimeout(Duration);

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream {
                inner,
                guard,
                lease,
                idle,
                timer,
            } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(timer) = timer {
                        timer.as_mut().reset(tokio::time::Instant::now() + *idle);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(err))) => {
                    guard.take();
                    Poll::Ready(Some(Err(Box::new(err))))
                }
                Poll::Ready(None) => {
                    if let Some(lease) = lease.take() {
                        lease.give_back();
                    }
                    guard.take();
                    Poll::Ready(None)
                }
                Poll::Pending => {
                    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(*idle)));
                    match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            guard.take();
                            Poll::Ready(Some(Err(Box::new(IdleTimeout(*idle)))))
                        }
                        Poll::Pending => Poll::Pending,
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
