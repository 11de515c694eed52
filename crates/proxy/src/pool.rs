//! Keep-alive HTTP/1.1 connections to machines.
//!
//! A plain per-address stack of hyper `SendRequest`s rather than
//! hyper-util's general client: the proxy already knows the socket address
//! (no URI parsing, no pool keys), a connection goes back on the stack only
//! when its response body has been read to the end (so it is idle), and a
//! request that failed on a reused connection the server had just closed is
//! retried once on a new one. One pool per serving runtime, so a
//! connection's driver task runs on the thread its requests come from.

use crate::forward::UpstreamBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Idle connections older than this are closed instead of reused (servers
/// commonly drop idle keep-alive connections after a minute or more).
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Idle connections kept per machine address.
const MAX_IDLE_PER_ADDR: usize = 512;

struct Idle {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// A connection lent to one request; back to the pool when its response
/// body ends cleanly ([`Lease::give_back`]), dropped (closed) otherwise.
pub(crate) struct Lease {
    pool: Weak<Pool>,
    addr: SocketAddr,
    sender: SendRequest<UpstreamBody>,
}

impl Lease {
    pub(crate) fn give_back(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(self.addr, self.sender);
        }
    }
}

impl Pool {
    fn put(&self, addr: SocketAddr, sender: SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let stack = idle.entry(addr).or_default();
        if stack.len() < MAX_IDLE_PER_ADDR {
            stack.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// An idle connection that is ready for a request, newest first.
    async fn take(&self, addr: SocketAddr) -> Option<SendRequest<UpstreamBody>> {
        loop {
            let idle = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let stack = idle.get_mut(&addr)?;
                // Oldest at the bottom: drop the expired ones.
                let fresh = stack
                    .iter()
                    .position(|i| i.since.elapsed() < IDLE_LIMIT)
                    .unwrap_or(stack.len());
                stack.drain(..fresh);
                stack.pop()?
            };
            let mut sender = idle.sender;
            if sender.is_closed() {
                continue;
            }
            if sender.is_ready() {
                return Some(sender);
            }
            // Given back right after its last body frame, the connection's
            // driver may not have marked it idle yet: give it a moment.
            if tokio::time::timeout(Duration::from_millis(50), sender.ready())
                .await
                .is_ok_and(|ready| ready.is_ok())
            {
                return Some(sender);
            }
        }
    }

    async fn connect(
        self: &Arc<Self>,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<SendRequest<UpstreamBody>, SendError> {
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| SendError::Connect(format!("no answer within {timeout:?}")))?
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %err, "connection to machine ended");
            }
        });
        Ok(sender)
    }

    /// Sends the request `build()` makes to `addr`, on an idle connection
    /// when there is one. `build` is called again for the one retry, so
    /// it must be able to make the request twice when `retry` is true.
    pub(crate) async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        connect_timeout: Duration,
        retry: bool,
        mut build: impl FnMut() -> Option<http::Request<UpstreamBody>>,
    ) -> Result<(http::Response<Incoming>, Lease), SendError> {
        if let Some(mut sender) = self.take(addr).await {
            let Some(request) = build() else {
                return Err(SendError::Connect("request body already consumed".into()));
            };
            match sender.send_request(request).await {
                Ok(response) => return Ok((response, self.lease(addr, sender))),
                // The server closed the idle connection as the request
                // went out: nothing was processed, so a retry is safe.
                Err(err) if retry && (err.is_canceled() || err.is_incomplete_message()) => {
                    tracing::debug!(%addr, error = %err, "reused connection was closed; retrying on a new one");
                }
                Err(err) => return Err(err.into()),
            }
        }
        let mut sender = self.connect(addr, connect_timeout).await?;
        let Some(request) = build() else {
            return Err(SendError::Connect("request body already consumed".into()));
        };
        let response = sender.send_request(request).await?;
        Ok((response, self.lease(addr, sender)))
    }

    fn lease(self: &Arc<Self>, addr: SocketAddr, sender: SendRequest<UpstreamBody>) -> Lease {
        Lease {
            pool: Arc::downgrade(self),
            addr,
            sender,
        }
    }
}
