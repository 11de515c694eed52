//! The egress proxy (roost-egress) in `roost up`: machines' way out, at
//! the private network's service address, under their app's policy, with
//! the tokenizer's injection on the same port.

use super::services;
use anyhow::{Context, Result};
use roost_machines::Machines;
use roost_net::plan::SERVICE_EGRESS_PORT;
use roost_types::EgressDefault;
use std::net::SocketAddr;

/// `roost up` flags of the egress proxy.
#[derive(Debug, clap::Args)]
pub struct EgressArgs {
    /// Egress policy default of apps created from now on: `deny` (only
    /// what an app's policy allows) or `allow` (every destination its
    /// deny list does not name). Deny, because a host's operator decides
    /// what machines reach: by default roost reaches nothing beyond
    /// loopback and its own namespaces.
    #[arg(long, env = "ROOST_EGRESS_DEFAULT", default_value = "deny")]
    pub egress_default: EgressDefault,
    /// Connections one machine may hold open to the egress proxy at once
    /// (as many more get a 429 and are closed; past those, new ones are
    /// closed unanswered).
    #[arg(long, default_value_t = 256)]
    pub egress_max_connections: usize,
    /// Seconds a client of the egress proxy has to send each request head
    /// whole, however slowly it trickles in (on a kept-alive connection,
    /// counted from the previous answer); a client that has not is closed.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub egress_header_timeout: u64,
}

/// Serves the egress proxy at the service address, port 3128, when there
/// is a private network (without one, machines reach nothing outside
/// themselves, the proxy included).
pub(super) async fn start(
    machines: &Machines,
    args: &EgressArgs,
    guard: roost_destination_guard::Guard,
    tokenizer: roost_tokenizer::Tokenizer,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let Some(network) = machines.network() else {
        return Ok(Vec::new());
    };
    if args.egress_max_connections == 0 {
        anyhow::bail!("--egress-max-connections must be at least 1");
    }
    if args.egress_header_timeout == 0 {
        anyhow::bail!("--egress-header-timeout must be at least 1 second");
    }
    let config = roost_egress::EgressConfig {
        guard,
        tokenizer: Some(tokenizer),
        max_connections_per_machine: args.egress_max_connections,
        header_timeout: std::time::Duration::from_secs(args.egress_header_timeout),
        ..roost_egress::EgressConfig::default()
    };
    let proxy = roost_egress::EgressProxy::new(
        config,
        machines.egress_directory(),
        machines.egress_ledger(),
    );
    let workers = proxy
        .workers(roost_workers::per_cpu())
        .context("cannot start the egress proxy's worker threads")?;
    let listen = SocketAddr::new(network.service_address().into(), SERVICE_EGRESS_PORT);
    tracing::info!(
        %listen,
        max_connections_per_machine = args.egress_max_connections,
        header_timeout_secs = args.egress_header_timeout,
        "egress proxy: apps created from now on get the policy default {} (roost up --egress-default)",
        machines.egress_default()
    );
    services::serve_workers(workers, &[listen.to_string()], "egress proxy").await
}
