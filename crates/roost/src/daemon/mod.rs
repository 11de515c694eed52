//! `roost up`: the API server and orchestrator in one process. [`up`] is
//! the wiring: it opens the service over the data dir, then starts every
//! front end over it (the HTTP API with `/mcp`, the edge proxy) and the
//! services machines use (internal DNS, S3, the tokenizer, the egress
//! proxy), and stops them
//! on SIGTERM/SIGINT. Each part's setup lives in its module; a new service
//! gets a module and a line in [`up`].

mod api;
mod data_dir;
mod egress;
mod host;
mod proxy;
mod services;

use anyhow::{Context, Result};
use roost_machines::{Machines, MachinesConfig, OciRuntimeKind};
// Ports roost's services answer machines on, at the private network's
// service address (`fdaa:<site>::3`; `fdaa::3` by default), whatever the
// loopback listen addresses are. roost-net's input filter opens exactly these.
use roost_net::plan::{SERVICE_API_PORT, SERVICE_S3_PORT, SERVICE_TOKENIZER_PORT};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// `roost up` flags.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Directory holding all of roost's state.
    #[arg(long, env = "ROOST_DATA_DIR", default_value = "/var/lib/roost")]
    pub data_dir: PathBuf,
    /// Address of the Machines API.
    #[arg(long, env = "ROOST_API_LISTEN", default_value = "127.0.0.1:4280")]
    pub api_listen: String,
    /// OCI runtime for machines whose config names none (`crun` or `runc`).
    #[arg(long, env = "ROOST_RUNTIME", default_value = "crun")]
    pub runtime: OciRuntimeKind,
    /// Region name every machine reports.
    #[arg(long, default_value = "local")]
    pub region: String,
    /// Do not install missing host packages with apt-get.
    #[arg(long)]
    pub no_install: bool,
    /// Registry (`HOST[:PORT]`, as written in image references) to pull from over plain
    /// HTTP instead of HTTPS (repeatable). Adds to `insecure` in DATA_DIR/registries.json.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// PEM file of CA certificates trusted for registries besides the system roots.
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
    /// How many of its newest lifecycle events each machine keeps (at
    /// least 1); older ones are dropped as new ones are written.
    #[arg(
        long,
        env = "ROOST_EVENTS_PER_MACHINE",
        default_value_t = roost_store::DEFAULT_EVENTS_PER_MACHINE,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub events_per_machine: u32,
    /// Seconds between scheduled volume snapshots, which is also the "day"
    /// snapshot retention counts in. For tests.
    #[arg(long, default_value_t = 86_400, hide = true)]
    pub volume_snapshot_day_secs: u64,
    /// Address of the S3 endpoint (object storage).
    #[arg(long, env = "ROOST_S3_LISTEN", default_value = "127.0.0.1:9000")]
    pub s3_listen: String,
    /// S3 endpoint URL given to machines as AWS_ENDPOINT_URL_S3: an address
    /// that machines can reach (of this host's addresses, machines on the
    /// private network reach only the service address's ports). Default: the
    /// private network's service address, port 9000 (`http://[fdaa::3]:9000`),
    /// or `http://127.0.0.1:9000` without a private network.
    #[arg(long, env = "ROOST_S3_PUBLIC_URL")]
    pub s3_public_url: Option<String>,
    /// Base domain for virtual-host style S3 requests (`BUCKET.DOMAIN`).
    #[arg(long, env = "ROOST_S3_DOMAIN", default_value = "localhost")]
    pub s3_domain: String,
    /// Address of the tokenizer, the egress proxy that injects sealed secrets.
    #[arg(long, env = "ROOST_TOKENIZER_LISTEN", default_value = "127.0.0.1:4001")]
    pub tokenizer_listen: String,
    /// PEM file of CA certificates the tokenizer trusts for upstreams
    /// besides the system roots (repeatable).
    #[arg(long = "tokenizer-ca", value_name = "FILE")]
    pub tokenizer_ca: Vec<PathBuf>,
    /// Upstream `HOST:PORT` the tokenizer reaches over plain HTTP instead of
    /// TLS (repeatable). For tests only: credentials cross the wire in clear.
    #[arg(
        long = "tokenizer-plain-http-upstream",
        value_name = "HOST:PORT",
        hide = true
    )]
    pub tokenizer_plain_http: Vec<String>,
    /// Destination `ADDR:PORT` that egress (the egress proxy and the
    /// tokenizer) may reach even
    /// though it is one egress never reaches otherwise: the host's
    /// loopback or own addresses, link-local and metadata addresses, IPv4
    /// private ranges, unique-local IPv6 and other apps' machines
    /// (repeatable; exact address and port, after DNS resolution).
    #[arg(long = "egress-allow-addr", value_name = "ADDR:PORT")]
    pub egress_allow_addrs: Vec<SocketAddr>,
    /// Site of the machines' private network: the second 16 bits of every
    /// private address (`fdaa:SITE::/32`). 0 puts roost's services at
    /// `fdaa::3`, as on Fly. Two daemons on one host need different sites.
    #[arg(long, env = "ROOST_NETWORK_SITE", default_value_t = 0)]
    pub network_site: u16,
    /// Directory of the machines' network namespace files [default:
    /// /run/roost/netns for site 0, /run/roost/netns-SSSS (hex) for others].
    /// Each daemon needs its own: it removes the namespaces it does not know.
    #[arg(long, env = "ROOST_NETNS_DIR")]
    pub netns_dir: Option<PathBuf>,
    /// Run machines without the private network (each alone with a
    /// loopback interface), e.g. on hosts that deny CAP_NET_ADMIN.
    #[arg(long)]
    pub no_private_network: bool,
    #[command(flatten)]
    pub egress: egress::EgressArgs,
    #[command(flatten)]
    pub proxy: Box<proxy::ProxyArgs>,
}

pub async fn up(args: UpArgs) -> Result<()> {
    if !args.no_install {
        host::install_missing_packages(!args.no_private_network)?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let tokens = std::sync::Arc::new(data_dir::tokens(&args.data_dir)?);
    // The private network's service address, where machines reach roost.
    let service = (!args.no_private_network)
        .then(|| IpAddr::V6(roost_net::AddressPlan::new(args.network_site).service_address()));
    let config = machines_config(&args, service)?;
    let machines = Machines::open(config)
        .await
        .context("cannot open roost's state")?;
    // Machines reach the services below at the service address too.
    let on_service = |port: u16| service.map(|addr| SocketAddr::new(addr, port).to_string());
    let dns = services::start_dns(&machines).await?;
    // The input filter lets machines' datagrams reach only host sockets
    // with the site's mark: the proxy's UDP flows carry it.
    let udp_mark = (!args.no_private_network)
        .then(|| roost_net::AddressPlan::new(args.network_site).socket_mark());
    let proxy = proxy::start(&machines, &args.proxy, &args.region, udp_mark).await?;
    let listener = tokio::net::TcpListener::bind(&args.api_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.api_listen))?;
    tracing::info!(addr = %listener.local_addr()?, data_dir = %args.data_dir.display(), "roost API listening");
    let s3_listens: Vec<String> = [Some(args.s3_listen.clone()), on_service(SERVICE_S3_PORT)]
        .into_iter()
        .flatten()
        .collect();
    let s3 = services::start_s3(&machines, &s3_listens, &args.s3_domain).await?;
    let mcp = roost_mcp::HttpOptions::new(listener.local_addr()?);
    let guard =
        services::destination_guard(&args.egress_allow_addrs, service.map(|_| args.network_site));
    let tokenizer_config = roost_tokenizer::TokenizerConfig {
        extra_ca_files: args.tokenizer_ca,
        plain_http_upstreams: args.tokenizer_plain_http,
        guard: guard.clone(),
    };
    let tokenizer_listens: Vec<String> = [
        Some(args.tokenizer_listen.clone()),
        on_service(SERVICE_TOKENIZER_PORT),
    ]
    .into_iter()
    .flatten()
    .collect();
    let tokenizer = services::tokenizer(&args.data_dir, &tokenizer_config)?;
    let seal_key = tokenizer.seal_key().to_string();
    let tokenizer_tasks = services::start_tokenizer(&tokenizer, &tokenizer_listens).await?;
    let egress = egress::start(&machines, &args.egress, guard, tokenizer).await?;
    let app = api::router(machines, tokens, &mcp, seal_key);
    // Streamed responses (MCP's SSE, followed logs) arrive in small writes;
    // with Nagle's algorithm each waits for the client's delayed ACK (~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let service_api = match on_service(SERVICE_API_PORT) {
        Some(addr) => {
            let listener = services::listen_on(&addr, "API for machines").await?;
            let app = app.clone();
            Some(tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, app).await {
                    tracing::error!(error = %err, "API server for machines failed");
                }
            }))
        }
        None => None,
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            mcp.end_streams();
        })
        .await
        .context("API server failed")?;
    for task in s3
        .iter()
        .chain(&tokenizer_tasks)
        .chain(&egress)
        .chain(&service_api)
        .chain(&dns)
        .chain(&proxy)
    {
        task.abort();
    }
    tracing::info!("roost stopped; machines keep running and are adopted at the next start");
    Ok(())
}

/// The service's settings from the flags, the data dir's files and
/// `ROOST_CRASH_AT`; `service` is the private network's service address,
/// `None` without a private network.
fn machines_config(args: &UpArgs, service: Option<IpAddr>) -> Result<MachinesConfig> {
    let mut config = MachinesConfig::new(
        &args.data_dir,
        crate::cli::log_relay(roost_machines::DEFAULT_LOG_MAX_BYTES),
    );
    config.registries = data_dir::registry_config(args)?;
    config.default_runtime = args.runtime;
    config.region = args.region.clone();
    config.crash_at = std::env::var(roost_machines::CRASH_AT_ENV).ok();
    config.volume_snapshot_day =
        std::time::Duration::from_secs(args.volume_snapshot_day_secs.max(1));
    config.egress_default = args.egress.egress_default;
    config.events_per_machine = args.events_per_machine;
    if service.is_some() {
        config.network = Some(roost_net::NetConfig {
            site: args.network_site,
            netns_dir: args
                .netns_dir
                .clone()
                .unwrap_or_else(|| roost_net::default_netns_dir(args.network_site)),
            egress: roost_net::Egress::None,
        });
    }
    config.storage = roost_machines::StorageConfig {
        public_url: args.s3_public_url.clone().unwrap_or_else(|| match service {
            Some(addr) => format!("http://{}", SocketAddr::new(addr, SERVICE_S3_PORT)),
            None => "http://127.0.0.1:9000".into(),
        }),
        region: "auto".into(),
    };
    Ok(config)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
