//! Upstream connections through the destination guard: the tokenizer
//! dials only what roost-destination-guard allows for the client's origin.

use hyper_util::rt::TokioIo;
use roost_destination_guard::{Guard, GuardError, Origin};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Upper bound on resolving and connecting to an upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A hyper connector that resolves and dials through the guard. Each
/// origin gets its own (and its own pool, see `Site`), because what the
/// guard allows depends on who asks.
#[derive(Clone)]
pub(crate) struct GuardedConnector {
    pub(crate) guard: Guard,
    pub(crate) origin: Origin,
}

impl tower_service::Service<http::Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = GuardError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, GuardError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GuardError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let guard = self.guard.clone();
        let origin = self.origin;
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            let connected = guard.connect(origin, host, port, CONNECT_TIMEOUT).await?;
            if let Err(err) = connected.stream.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY upstream");
            }
            Ok(TokioIo::new(connected.stream))
        })
    }
}

/// The guard's refusal somewhere in an upstream error's chain of causes.
pub(crate) fn refusal_in<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e GuardError> {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(guard) = err.downcast_ref::<GuardError>() {
            return guard.refusal().is_some().then_some(guard);
        }
        cause = err.source();
    }
    None
}
