//! The edge proxy in `roost up`: roost-proxy over the `Machines` service
//! layer. Everything the proxy does to machines (autostart, autostop,
//! check results) goes through the same `Machines` methods the API calls.

use anyhow::{Context, Result};
use roost_machines::{ListFilter, MachineError, Machines};
use roost_proxy::{AffinityKey, BackendError, Backends, BoxFuture, Proxy, ProxyConfig};
use roost_types::{CheckStatus, Machine, StopRequest};
use std::sync::Arc;
use std::time::Duration;

/// `roost up` flags of the proxy.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Address of the edge proxy (HTTP/1.1 and h2c). It serves machines'
    /// services with an `http` handler on port 80, 443 or this port.
    #[arg(long, env = "ROOST_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    pub proxy_listen: String,
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
    /// Milliseconds between the proxy's health-check and autostop rounds. For tests.
    #[arg(long, default_value_t = 1000, hide = true)]
    pub proxy_tick_ms: u64,
}

/// [`Backends`] over the service layer.
struct MachinesBackends(Machines);

fn backend_error(err: MachineError) -> BackendError {
    match err {
        MachineError::NotFound(msg) => BackendError::NotFound(msg),
        MachineError::Conflict(msg) | MachineError::LeaseMismatch(msg) => {
            BackendError::Conflict(msg)
        }
        other => BackendError::Failed(other.to_string()),
    }
}

impl Backends for MachinesBackends {
    fn change_count(&self) -> u64 {
        self.0.change_count()
    }

    fn apps(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        Box::pin(async move {
            let apps = self.0.list_apps(None).map_err(backend_error)?;
            Ok(apps.apps.into_iter().map(|app| app.name).collect())
        })
    }

    fn machines<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<Vec<Machine>, BackendError>> {
        Box::pin(async move {
            self.0
                .list_machines(app, &ListFilter::default())
                .map_err(backend_error)
        })
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
pub async fn start(
    machines: &Machines,
    args: &ProxyArgs,
    region: &str,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let config = ProxyConfig {
        domain: args.proxy_domain.trim_matches('.').to_ascii_lowercase(),
        region: region.to_string(),
        autostop_idle: Duration::from_secs(args.proxy_autostop_idle_secs),
        queue_timeout: Duration::from_secs(args.proxy_queue_secs),
        affinity_keys: args.proxy_affinity_keys.clone(),
        tick: Duration::from_millis(args.proxy_tick_ms.max(10)),
        ..ProxyConfig::default()
    };
    let proxy = Proxy::new(Arc::new(MachinesBackends(machines.clone())), config);
    let mut tasks = vec![proxy.spawn_supervisor()];
    let listener = std::net::TcpListener::bind(&args.proxy_listen)
        .with_context(|| format!("cannot listen on {} (proxy)", args.proxy_listen))?;
    tracing::info!(addr = %listener.local_addr()?, domain = %args.proxy_domain, "edge proxy listening");
    let workers = args.proxy_workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let serving = proxy.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(err) = serving
            .serve_workers(listener, workers, std::future::pending())
            .await
        {
            tracing::error!(error = %err, "edge proxy failed");
        }
    }));
    for spec in &args.proxy_tcp {
        let (app, port, addr) = parse_tcp(spec)?;
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (proxy TCP service {spec})"))?;
        tracing::info!(%addr, app, port, "edge proxy TCP service listening");
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(err) = proxy
                .serve_tcp(listener, &app, port, std::future::pending())
                .await
            {
                tracing::error!(error = %err, "edge proxy TCP service failed");
            }
        }));
    }
    Ok(tasks)
}

/// `APP:PORT=ADDR`.
fn parse_tcp(spec: &str) -> Result<(String, u16, String)> {
    let parsed = spec.split_once('=').and_then(|(left, addr)| {
        let (app, port) = left.split_once(':')?;
        Some((app.to_string(), port.parse::<u16>().ok()?, addr.to_string()))
    });
    parsed
        .filter(|(app, port, addr)| !app.is_empty() && *port > 0 && !addr.is_empty())
        .with_context(|| {
            format!(
                "--proxy-tcp {spec:?} is invalid: use APP:PORT=ADDR, e.g. db:5432=127.0.0.1:15432"
            )
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn tcp_specs() {
        assert_eq!(
            super::parse_tcp("db:5432=127.0.0.1:15432").unwrap(),
            ("db".into(), 5432, "127.0.0.1:15432".into())
        );
        assert!(super::parse_tcp("db=127.0.0.1:1").is_err());
        assert!(super::parse_tcp("db:x=127.0.0.1:1").is_err());
    }
}
