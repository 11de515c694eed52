//! `roost mcp`: MCP over stdio for a local agent.
//!
//! The bridge is a relay, not a second server: it reads JSON-RPC messages
//! from stdin, sends them to the daemon's `/mcp` with rmcp's Streamable HTTP
//! client (which handles sessions, protocol-version headers and SSE for
//! every protocol version), and writes what comes back to stdout. Tool
//! logic, authentication and token scope therefore stay in the daemon.

use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use rmcp::RoleServer;

/// Why the stdio bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{url} is not a plain http:// URL; roost mcp talks to the roost API over HTTP")]
    Url { url: String },
    #[error("cannot relay to roost's MCP endpoint {endpoint}: {message} (is `roost up` running there, and is ROOST_API_TOKEN its token?)")]
    Upstream { endpoint: String, message: String },
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
}

/// Relays MCP between stdin/stdout and `api_url`'s `/mcp` until stdin
/// closes or the daemon goes away.
pub async fn serve_stdio(api_url: &str, token: &str) -> Result<(), BridgeError> {
    if !api_url.starts_with("http://") {
        return Err(BridgeError::Url {
            url: api_url.to_string(),
        });
    }
    let endpoint = format!("{}/mcp", api_url.trim_end_matches('/'));
    let upstream_error = |message: String| BridgeError::Upstream {
        endpoint: endpoint.clone(),
        message,
    };
    let mut http = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(endpoint.clone()).auth_header(token),
    );
    let mut stdio = rmcp::transport::async_rw::AsyncRwTransport::<RoleServer, _, _>::new_server(
        tokio::io::stdin(),
        tokio::io::stdout(),
    );
    tracing::debug!(%endpoint, "relaying MCP between stdio and roost");
    let outcome = loop {
        tokio::select! {
            message = stdio.receive() => match message {
                Some(message) => {
                    if let Err(err) = http.send(message).await {
                        break Err(upstream_error(err.to_string()));
                    }
                }
                None => break Ok(()),
            },
            message = http.receive() => match message {
                Some(message) => {
                    if let Err(err) = stdio.send(message).await {
                        break Err(BridgeError::Stdout(err));
                    }
                }
                None => break Err(upstream_error("the connection ended".into())),
            },
        }
    };
    if let Err(err) = http.close().await {
        tracing::debug!(error = %err, "closing the MCP session failed");
    }
    outcome
}
