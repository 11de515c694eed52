//! The services `roost up` runs besides the API: internal DNS, the
//! tokenizer and the S3 endpoint, each on its own listeners.

use anyhow::{Context, Result};
use roost_machines::Machines;
use roost_net::plan::SERVICE_DNS_PORT;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// Serves the internal DNS at the service address, port 53 (UDP and TCP),
/// when there is a private network.
pub(super) async fn start_dns(machines: &Machines) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let (Some(network), Some(resolver)) = (machines.network(), machines.dns_resolver()) else {
        return Ok(None);
    };
    let addr = SocketAddr::new(IpAddr::V6(network.service_address()), SERVICE_DNS_PORT);
    let server = roost_net::dns::DnsServer::bind(addr)
        .await
        .context("cannot start the internal DNS server")?;
    tracing::info!(%addr, "internal DNS listening");
    Ok(Some(server.serve(resolver)))
}

/// The rule of what egress never reaches (roost-destination-guard): with
/// a private network, its site is closed outside each machine's own app.
pub(super) fn destination_guard(
    allowed: &[SocketAddr],
    site: Option<u16>,
) -> roost_destination_guard::Guard {
    if !allowed.is_empty() {
        tracing::warn!(
            ?allowed,
            "egress may reach these otherwise forbidden destinations (--egress-allow-addr)"
        );
    }
    let site = site.map(|site| {
        let (prefix, len) = roost_net::AddressPlan::new(site).site_prefix();
        roost_destination_guard::Site {
            prefix: roost_destination_guard::Prefix::new(prefix, len),
            app_prefix_len: roost_net::plan::APP_PREFIX_LEN,
        }
    });
    roost_destination_guard::Guard::new(roost_destination_guard::GuardConfig {
        site,
        allowed: allowed.to_vec(),
    })
}

/// The tokenizer, with its keypair in `DATA/tokenizer/open-key`.
pub(super) fn tokenizer(
    data_dir: &Path,
    config: &roost_tokenizer::TokenizerConfig,
) -> Result<roost_tokenizer::Tokenizer> {
    let key = roost_tokenizer::OpenKey::load_or_create(&data_dir.join("tokenizer/open-key"))
        .context("cannot load the tokenizer's key")?;
    roost_tokenizer::Tokenizer::new(key, config).context("cannot set up the tokenizer")
}

/// Serves the tokenizer on its own listeners.
pub(super) async fn start_tokenizer(
    tokenizer: &roost_tokenizer::Tokenizer,
    listens: &[String],
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let workers = tokenizer
        .workers(roost_workers::per_cpu())
        .context("cannot start the tokenizer's worker threads")?;
    serve_workers(workers, listens, "tokenizer").await
}

/// Feeds connections of every listener in `listens` to `workers` (one
/// thread per CPU, say), the service called `what`.
pub(super) async fn serve_workers(
    workers: roost_workers::Workers,
    listens: &[String],
    what: &str,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let workers = Arc::new(workers);
    let mut tasks = Vec::new();
    for listen in listens {
        let listener = listen_on(listen, what).await?;
        let workers = workers.clone();
        tasks.push(tokio::spawn(async move {
            workers.serve(&listener, std::future::pending()).await
        }));
    }
    Ok(tasks)
}

/// Binds `listen` for the service called `what`, and says so in the log.
pub(super) async fn listen_on(listen: &str, what: &str) -> Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ({what})"))?;
    tracing::info!(addr = %listener.local_addr()?, "{what} listening");
    Ok(listener)
}

/// Serves S3 on `listens` until roost stops; app key pairs come from the store.
pub(super) async fn start_s3(
    machines: &Machines,
    listens: &[String],
    domain: &str,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let service = machines
        .object_store()
        .service(roost_objects::ServiceOptions {
            apps: Some(machines.storage_keys()),
            domain: Some(domain.to_string()),
        })
        .context("cannot set up the S3 endpoint")?;
    let mut tasks = Vec::new();
    for listen in listens {
        let listener = listen_on(listen, "S3 endpoint").await?;
        tasks.push(tokio::spawn(roost_objects::serve(
            listener,
            service.clone(),
            std::future::pending(),
        )));
    }
    Ok(tasks)
}
