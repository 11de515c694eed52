//! `/mcp` over Streamable HTTP.

use crate::tools::Tools;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use roost_machines::Machines;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The tower service to mount at `/mcp`.
pub type McpHttpService = StreamableHttpService<Tools, LocalSessionManager>;

/// How `/mcp` is exposed: which `Host` and `Origin` headers it accepts and
/// when its long-lived streams end.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    shutdown: CancellationToken,
}

impl HttpOptions {
    /// Options for an API bound to `listen`. Clients must name that address
    /// (or `localhost` for a loopback one) in `Host`, and browsers may only
    /// call from that origin: this defeats DNS rebinding. A wildcard address
    /// (`0.0.0.0`, `::`) is reachable under names roost cannot know, so it
    /// accepts any `Host` and `Origin`; the bearer token still guards it.
    pub fn new(listen: SocketAddr) -> HttpOptions {
        let ip = listen.ip();
        let mut names = Vec::new();
        if !ip.is_unspecified() {
            names.push(match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            });
            if ip.is_loopback() {
                names.push("localhost".into());
            }
        }
        let port = listen.port();
        HttpOptions {
            allowed_hosts: names.iter().map(|n| format!("{n}:{port}")).collect(),
            allowed_origins: names.iter().map(|n| format!("http://{n}:{port}")).collect(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Ends every open MCP stream and session of services built from these
    /// options. SSE streams otherwise stay open until their clients leave,
    /// which would keep a graceful shutdown waiting.
    pub fn end_streams(&self) {
        self.shutdown.cancel();
    }
}

/// The MCP Streamable HTTP service over `machines`. Sessions (protocol
/// versions before 2026-07-28) live in memory and end after 5 idle minutes.
pub fn http_service(machines: Machines, options: &HttpOptions) -> McpHttpService {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(options.shutdown.clone())
        .with_allowed_hosts(options.allowed_hosts.clone())
        .with_allowed_origins(options.allowed_origins.clone());
    if !options.allowed_origins.is_empty() {
        config = config.enforce_origin_validation();
    }
    let tools = Tools::new(machines);
    StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_follow_the_listen_address() {
        let local = HttpOptions::new("127.0.0.1:4280".parse().unwrap());
        assert_eq!(local.allowed_hosts, ["127.0.0.1:4280", "localhost:4280"]);
        assert_eq!(
            local.allowed_origins,
            ["http://127.0.0.1:4280", "http://localhost:4280"]
        );
        let v6 = HttpOptions::new("[fdaa::1]:80".parse().unwrap());
        assert_eq!(v6.allowed_hosts, ["[fdaa::1]:80"]);
        let any = HttpOptions::new("0.0.0.0:4280".parse().unwrap());
        assert!(any.allowed_hosts.is_empty() && any.allowed_origins.is_empty());
    }
}
