//! The edge proxy in `roost up`: roost-proxy over the `Machines` service
//! layer. Everything the proxy does to machines (autostart, autostop,
//! check results) goes through the same service methods the API calls,
//! acting as the edge proxy's [`Caller`].

use anyhow::{Context, Result};
use roost_machines::{Caller, MachineError, MachineRecord, Machines, Service};
use roost_proxy::{
    AffinityKey, BackendError, Backends, BoxFuture, Proxy, ProxyConfig, ProxyError, TlsCertificate,
};
use roost_types::{CheckStatus, StopRequest};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `roost up` flags of the proxy.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Address of the edge proxy (HTTP/1.1 and h2c). It serves machines'
    /// services with an `http` handler and no `tls` handler on port 80 or
    /// this port.
    #[arg(long, env = "ROOST_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    pub proxy_listen: String,
    /// PEM certificate (then intermediates) of the proxy's TLS listeners,
    /// for every app: `*.<domain>`, or each `<app>.<domain>` when the
    /// domain is one label (`localhost`). Needs --proxy-tls-key.
    #[arg(long, value_name = "PEM", requires = "proxy_tls_key")]
    pub proxy_tls_cert: Option<PathBuf>,
    /// PEM private key of --proxy-tls-cert.
    #[arg(long, value_name = "PEM", requires = "proxy_tls_cert")]
    pub proxy_tls_key: Option<PathBuf>,
    /// Address of the edge proxy's HTTPS listener (HTTP/1.1, and HTTP/2 by
    /// ALPN), bound only with --proxy-tls-cert. It serves machines'
    /// services with the `tls` and `http` handlers on port 443 or this port.
    #[arg(long, env = "ROOST_PROXY_TLS_LISTEN", default_value = "127.0.0.1:8443")]
    pub proxy_tls_listen: String,
    /// Apps are reached at `<app>.<DOMAIN>`.
    #[arg(long, env = "ROOST_PROXY_DOMAIN", default_value = "localhost")]
    pub proxy_domain: String,
    /// Seconds a machine with `autostop` may be idle before the proxy stops it.
    #[arg(long, default_value_t = 300)]
    pub proxy_autostop_idle_secs: u64,
    /// Seconds a request waits for capacity when every machine is at its
    /// hard limit, before 503.
    #[arg(long, default_value_t = 10)]
    pub proxy_queue_secs: u64,
    /// Session key pinning requests to the machine that served the session
    /// first: `header:NAME` or `cookie:NAME` (repeatable).
    #[arg(long = "proxy-affinity-key", default_value = "header:mcp-session-id")]
    pub proxy_affinity_keys: Vec<AffinityKey>,
    /// Threads serving proxy connections (default: one per CPU).
    #[arg(long)]
    pub proxy_workers: Option<usize>,
    /// A raw TCP service: connections to ADDR go to APP's machines whose
    /// services have no handler on public port PORT (repeatable).
    #[arg(long = "proxy-tcp", value_name = "APP:PORT=ADDR")]
    pub proxy_tcp: Vec<String>,
    /// A TLS-terminated TCP service: TLS connections to ADDR (with
    /// --proxy-tls-cert) go, as plaintext, to APP's machines whose services
    /// have exactly the `tls` handler on public port PORT (repeatable).
    #[arg(
        long = "proxy-tls-tcp",
        value_name = "APP:PORT=ADDR",
        requires = "proxy_tls_cert"
    )]
    pub proxy_tls_tcp: Vec<String>,
    /// A UDP service: datagrams to ADDR go to APP's machines whose
    /// services have `"protocol": "udp"` on public port PORT, one flow per
    /// client address (repeatable). The machine's program must listen on
    /// its private address or `[::]` at the service's internal_port.
    #[arg(long = "proxy-udp", value_name = "APP:PORT=ADDR")]
    pub proxy_udp: Vec<String>,
    /// Least milliseconds between two of the proxy's health-check and
    /// autostop rounds (and before the first), which run when a machine
    /// changes or a check or autostop falls due. For tests.
    #[arg(long, default_value_t = 1000, hide = true)]
    pub proxy_tick_ms: u64,
}

/// [`Backends`] over the service layer, acting as the edge proxy.
struct MachinesBackends(Service);

fn backend_error(err: MachineError) -> BackendError {
    match err {
        MachineError::NotFound(msg) => BackendError::NotFound(msg),
        MachineError::Missing(missing) => BackendError::NotFound(missing.to_string()),
        MachineError::Conflict(msg) | MachineError::LeaseMismatch(msg) => {
            BackendError::Conflict(msg)
        }
        other => BackendError::Failed(other.to_string()),
    }
}

impl Backends for MachinesBackends {
    fn change_count(&self) -> u64 {
        // The edge proxy has every right: this is never refused.
        self.0.change_count().unwrap_or_default()
    }

    fn changed(&self, seen: u64) -> BoxFuture<'static, ()> {
        match self.0.changed_since(seen) {
            Ok(changed) => Box::pin(changed),
            // Never refused (as above); a refusal would mean nothing to wait for.
            Err(_) => Box::pin(std::future::pending()),
        }
    }

    fn apps(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        Box::pin(async move {
            let apps = self.0.list_apps(None).map_err(backend_error)?;
            Ok(apps.apps.into_iter().map(|app| app.name).collect())
        })
    }

    fn machines<'a>(
        &'a self,
        app: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MachineRecord>, BackendError>> {
        Box::pin(async move { self.0.machines_for_routing(app).map_err(backend_error) })
    }

    fn start<'a>(&'a self, app: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.0
                .start_machine(app, id, None)
                .await
                .map(|_| ())
                .map_err(backend_error)
        })
    }

    fn stop<'a>(&'a self, app: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.0
                .stop_machine(app, id, StopRequest::default(), None)
                .await
                .map_err(backend_error)
        })
    }

    fn report_checks(&self, app: &str, id: &str, checks: Vec<CheckStatus>) {
        if let Err(err) = self.0.set_checks(app, id, checks) {
            tracing::debug!(app, machine = id, error = %err, "cannot record check results");
        }
    }
}

/// Starts the proxy's listeners and supervisor; returns their tasks.
/// `udp_socket_mark` marks the sockets of UDP flows to machines.
pub async fn start(
    machines: &Machines,
    args: &ProxyArgs,
    region: &str,
    udp_socket_mark: Option<u32>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let config = ProxyConfig {
        domain: args.proxy_domain.trim_matches('.').to_ascii_lowercase(),
        region: region.to_string(),
        autostop_idle: Duration::from_secs(args.proxy_autostop_idle_secs),
        queue_timeout: Duration::from_secs(args.proxy_queue_secs),
        affinity_keys: args.proxy_affinity_keys.clone(),
        tick: Duration::from_millis(args.proxy_tick_ms.max(10)),
        udp_socket_mark,
        ..ProxyConfig::default()
    };
    let certificate = match (&args.proxy_tls_cert, &args.proxy_tls_key) {
        (Some(cert), Some(key)) => Some(TlsCertificate::load(cert, key)?),
        _ => None,
    };
    let proxy = Proxy::new(
        Arc::new(MachinesBackends(machines.as_caller(&Caller::edge_proxy()))),
        config,
    );
    let mut tasks = vec![proxy.spawn_supervisor()];
    let workers = args.proxy_workers.unwrap_or_else(roost_workers::per_cpu);
    let listener = std::net::TcpListener::bind(&args.proxy_listen)
        .with_context(|| format!("cannot listen on {} (proxy)", args.proxy_listen))?;
    tracing::info!(addr = %listener.local_addr()?, domain = %args.proxy_domain, "edge proxy listening");
    let serving = proxy.clone();
    tasks.push(spawn_serving("edge proxy", async move {
        serving
            .serve_workers(listener, workers, std::future::pending())
            .await
    }));
    if let Some(certificate) = &certificate {
        let listener = std::net::TcpListener::bind(&args.proxy_tls_listen)
            .with_context(|| format!("cannot listen on {} (proxy TLS)", args.proxy_tls_listen))?;
        tracing::info!(addr = %listener.local_addr()?, "edge proxy TLS listening");
        let (serving, certificate) = (proxy.clone(), certificate.clone());
        tasks.push(spawn_serving("edge proxy TLS", async move {
            serving
                .serve_tls_workers(listener, workers, &certificate, std::future::pending())
                .await
        }));
    }
    // Raw TCP services, then TLS-terminated ones: (flag, spec, certificate).
    let plain_tcp = args
        .proxy_tcp
        .iter()
        .map(|spec| ("--proxy-tcp", spec, None));
    let tls_tcp = args
        .proxy_tls_tcp
        .iter()
        .map(|spec| ("--proxy-tls-tcp", spec, certificate.clone()));
    let tcp_services = plain_tcp.chain(tls_tcp);
    for (flag, spec, certificate) in tcp_services {
        let (app, port, addr) = parse_spec(flag, spec)?;
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} ({flag} {spec})"))?;
        tracing::info!(%addr, app, port, tls = certificate.is_some(), "edge proxy TCP service listening");
        let proxy = proxy.clone();
        tasks.push(spawn_serving("edge proxy TCP service", async move {
            proxy
                .serve_tcp(
                    listener,
                    &app,
                    port,
                    certificate.as_ref(),
                    std::future::pending(),
                )
                .await
        }));
    }
    for spec in &args.proxy_udp {
        let (app, port, addr) = parse_spec("--proxy-udp", spec)?;
        let socket = tokio::net::UdpSocket::bind(&addr)
            .await
            .with_context(|| format!("cannot bind {addr} (--proxy-udp {spec})"))?;
        tracing::info!(%addr, app, port, "edge proxy UDP service listening");
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            proxy
                .serve_udp(socket, &app, port, std::future::pending())
                .await
        }));
    }
    Ok(tasks)
}

/// Runs one of the proxy's listeners, logging its failure.
fn spawn_serving(
    what: &'static str,
    serving: impl Future<Output = Result<(), ProxyError>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(err) = serving.await {
            tracing::error!(error = %err, "{what} failed");
        }
    })
}

/// `APP:PORT=ADDR`, the value of `flag` (a TCP or UDP service).
fn parse_spec(flag: &str, spec: &str) -> Result<(String, u16, String)> {
    let parsed = spec.split_once('=').and_then(|(left, addr)| {
        let (app, port) = left.split_once(':')?;
        Some((app.to_string(), port.parse::<u16>().ok()?, addr.to_string()))
    });
    parsed
        .filter(|(app, port, addr)| !app.is_empty() && *port > 0 && !addr.is_empty())
        .with_context(|| {
            format!("{flag} {spec:?} is invalid: use APP:PORT=ADDR, e.g. db:5432=127.0.0.1:15432")
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn listener_specs() {
        assert_eq!(
            super::parse_spec("--proxy-tcp", "db:5432=127.0.0.1:15432").unwrap(),
            ("db".into(), 5432, "127.0.0.1:15432".into())
        );
        assert!(super::parse_spec("--proxy-tcp", "db=127.0.0.1:1").is_err());
        let err = super::parse_spec("--proxy-tls-tcp", "db:x=127.0.0.1:1").unwrap_err();
        assert!(
            err.to_string().starts_with("--proxy-tls-tcp \"db:x"),
            "{err}"
        );
        let err = super::parse_spec("--proxy-udp", "dns:53").unwrap_err();
        assert!(err.to_string().starts_with("--proxy-udp \"dns:53"), "{err}");
    }
}
