//! `roost up`: the API server and orchestrator in one process.

use anyhow::{Context, Result};
use roost_machines::{Machines, MachinesConfig, OciRuntimeKind, RegistryConfig};
// Ports roost's services answer machines on, at the private network's
// service address (`fdaa:<site>::3`; `fdaa::3` by default), whatever the
// loopback listen addresses are. roost-net's input filter opens exactly these.
use roost_net::plan::{
    SERVICE_API_PORT, SERVICE_DNS_PORT, SERVICE_S3_PORT, SERVICE_TOKENIZER_PORT,
};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Host tools `roost up` needs, with the Debian packages that provide them.
const REQUIRED_TOOLS: &[(&str, &str)] = &[
    ("crun", "crun"),
    ("runc", "runc"),
    ("tini-static", "tini"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.xfs", "xfsprogs"),
];
/// What the private network needs besides: its input filter's tool.
const NETWORK_TOOLS: &[(&str, &str)] = &[("ip6tables-restore", roost_net::firewall::PACKAGE)];

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
    /// Site of the machines' private network: the second 16 bits of every
    /// private address (`fdaa:SITE::/32`). 0 puts roost's services at
    /// `fdaa::3`, as on Fly. Two daemons on one host need different sites.
    #[arg(long, env = "ROOST_NETWORK_SITE", default_value_t = 0)]
    pub network_site: u16,
    /// Directory of the machines' network namespace files.
    #[arg(long, env = "ROOST_NETNS_DIR", default_value = roost_net::DEFAULT_NETNS_DIR)]
    pub netns_dir: PathBuf,
    /// Run machines without the private network (each alone with a
    /// loopback interface), e.g. on hosts that deny CAP_NET_ADMIN.
    #[arg(long)]
    pub no_private_network: bool,
    #[command(flatten)]
    pub proxy: Box<crate::proxy::ProxyArgs>,
}

/// Name of the registry settings file in the data dir: `{"insecure": [..], "ca_file": ..,
/// "credentials": {"HOST[:PORT]": {"username": .., "password": ..}}}`.
const REGISTRIES_FILE: &str = "registries.json";

/// Registry settings: the data dir's registries.json (if any) plus the command-line flags.
fn registry_config(args: &UpArgs) -> Result<RegistryConfig> {
    let path = args.data_dir.join(REGISTRIES_FILE);
    let mut config = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is invalid; expected {{\"insecure\": [\"HOST:PORT\"], \"ca_file\": \"PATH\", \"credentials\": {{\"HOST:PORT\": {{\"username\": .., \"password\": ..}}}}}}",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RegistryConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    config
        .insecure
        .extend(args.insecure_registries.iter().cloned());
    if let Some(ca) = &args.registry_ca {
        config.ca_file = Some(ca.clone());
    }
    Ok(config)
}

pub async fn up(args: UpArgs) -> Result<()> {
    if !args.no_install {
        install_missing_packages(!args.no_private_network)?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let token = admin_token(&args.data_dir)?;
    let mut config = MachinesConfig::new(&args.data_dir);
    config.registries = registry_config(&args)?;
    config.default_runtime = args.runtime;
    config.region = args.region.clone();
    config.crash_at = std::env::var(roost_machines::CRASH_AT_ENV).ok();
    config.volume_snapshot_day =
        std::time::Duration::from_secs(args.volume_snapshot_day_secs.max(1));
    let service = (!args.no_private_network)
        .then(|| IpAddr::V6(roost_net::AddressPlan::new(args.network_site).service_address()));
    if service.is_some() {
        config.network = Some(roost_net::NetConfig {
            site: args.network_site,
            netns_dir: args.netns_dir.clone(),
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
    let machines = Machines::open(config)
        .await
        .context("cannot open roost's state")?;
    // Machines reach the services below at the service address too.
    let on_service = |port: u16| service.map(|addr| SocketAddr::new(addr, port).to_string());
    let dns = start_dns(&machines).await?;
    let proxy = crate::proxy::start(&machines, &args.proxy, &args.region).await?;
    let listener = tokio::net::TcpListener::bind(&args.api_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.api_listen))?;
    tracing::info!(addr = %listener.local_addr()?, data_dir = %args.data_dir.display(), "roost API listening");
    let s3_listens: Vec<String> = [Some(args.s3_listen.clone()), on_service(SERVICE_S3_PORT)]
        .into_iter()
        .flatten()
        .collect();
    let s3 = start_s3(&machines, &s3_listens, &args.s3_domain).await?;
    let mcp = roost_mcp::HttpOptions::new(listener.local_addr()?);
    let tokenizer_config = roost_tokenizer::TokenizerConfig {
        extra_ca_files: args.tokenizer_ca,
        plain_http_upstreams: args.tokenizer_plain_http,
    };
    let tokenizer_listens: Vec<String> = [
        Some(args.tokenizer_listen.clone()),
        on_service(SERVICE_TOKENIZER_PORT),
    ]
    .into_iter()
    .flatten()
    .collect();
    let tokenizer = start_tokenizer(&args.data_dir, &tokenizer_listens, &tokenizer_config).await?;
    let app = roost_api::router(machines, token.clone(), &mcp)
        .merge(roost_api::tokenizer_router(tokenizer.0, token));
    // Streamed responses (MCP's SSE, followed logs) arrive in small writes;
    // with Nagle's algorithm each waits for the client's delayed ACK (~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let service_api = match on_service(SERVICE_API_PORT) {
        Some(addr) => {
            let listener = listen_on(&addr, "API for machines").await?;
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
        .chain(&tokenizer.1)
        .chain(&service_api)
        .chain(&dns)
        .chain(&proxy)
    {
        task.abort();
    }
    tracing::info!("roost stopped; machines keep running and are adopted at the next start");
    Ok(())
}

/// Serves the internal DNS at the service address, port 53 (UDP and TCP),
/// when there is a private network.
async fn start_dns(machines: &Machines) -> Result<Option<tokio::task::JoinHandle<()>>> {
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

/// Starts the tokenizer on its own listeners with its keypair in
/// `DATA/tokenizer/open-key`; returns its seal key (hex) and its tasks.
async fn start_tokenizer(
    data_dir: &Path,
    listens: &[String],
    config: &roost_tokenizer::TokenizerConfig,
) -> Result<(String, Vec<tokio::task::JoinHandle<()>>)> {
    let key = roost_tokenizer::OpenKey::load_or_create(&data_dir.join("tokenizer/open-key"))
        .context("cannot load the tokenizer's key")?;
    let tokenizer =
        roost_tokenizer::Tokenizer::new(key, config).context("cannot set up the tokenizer")?;
    let seal_key = tokenizer.seal_key().to_string();
    // One worker thread per CPU, fed by every listener.
    let workers = Arc::new(
        tokenizer
            .workers(roost_workers::per_cpu())
            .context("cannot start the tokenizer's worker threads")?,
    );
    let mut tasks = Vec::new();
    for listen in listens {
        let listener = listen_on(listen, "tokenizer").await?;
        let workers = workers.clone();
        tasks.push(tokio::spawn(async move {
            workers.serve(&listener, std::future::pending()).await
        }));
    }
    Ok((seal_key, tasks))
}

/// Binds `listen` for the service called `what`, and says so in the log.
async fn listen_on(listen: &str, what: &str) -> Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ({what})"))?;
    tracing::info!(addr = %listener.local_addr()?, "{what} listening");
    Ok(listener)
}

/// Serves S3 on `listens` until roost stops; app key pairs come from the store.
async fn start_s3(
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

/// The admin token, created on first start (0600, 32 random bytes as hex).
fn admin_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("cannot read /dev/urandom")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    roost_atomic_file::write(&path, format!("{token}\n").as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "wrote the admin API token");
    Ok(token)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// Installs the Debian packages of missing host tools, so that `roost up`
/// works on a fresh Debian/Ubuntu machine.
fn install_missing_packages(private_network: bool) -> Result<()> {
    let network_tools = if private_network { NETWORK_TOOLS } else { &[] };
    let missing: Vec<&str> = REQUIRED_TOOLS
        .iter()
        .chain(network_tools)
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    tracing::info!(packages = ?missing, "installing missing host packages with apt-get");
    let apt = |args: &[&str]| -> Result<()> {
        let status = std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .status()
            .context("cannot run apt-get; install the packages yourself or pass --no-install")?;
        anyhow::ensure!(
            status.success(),
            "apt-get {} failed ({status})",
            args.join(" ")
        );
        Ok(())
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q"];
    install.extend(&missing);
    apt(&install)
}
