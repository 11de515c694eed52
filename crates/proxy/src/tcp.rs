//! Raw TCP services: a listener bound to one app and public port, whose
//! connections are spliced to a machine's service that has no handler on
//! that port (or, after TLS termination, only `tls`). Autostart, limits,
//! cordons, checks and autostop apply as for HTTP; a connection is one
//! unit of load for its whole life.

use crate::route::Listen;
use crate::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Splices `client` (the accepted connection, or its plaintext after TLS
/// termination) to a machine reached through `listen`.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    app: Arc<str>,
    listen: Listen,
    client: impl AsyncRead + AsyncWrite + Unpin,
) {
    let Some(picked) = shared
        .router
        .route_or_log(&app, &listen, "TCP connection")
        .await
    else {
        return;
    };
    let id = picked.backend.id().to_string();
    let Some(addr) = picked.upstream() else {
        tracing::warn!(app = %app, machine = %id, "machine has no private IP address");
        return;
    };
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::warn!(app = %app, machine = %id, %addr, error = %err, "cannot reach machine");
            return;
        }
        Err(_) => {
            tracing::warn!(app = %app, machine = %id, %addr, "connect to machine timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let idle = picked.idle_timeout(shared.config.idle_timeout);
    match crate::tunnel::splice(client, upstream, idle).await {
        Ok((up, down)) => {
            tracing::debug!(app = %app, machine = %id, up, down, "TCP connection closed")
        }
        Err(err) => {
            tracing::debug!(app = %app, machine = %id, error = %err, "TCP connection ended")
        }
    }
    drop(picked);
}
