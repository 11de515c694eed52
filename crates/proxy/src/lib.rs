//! roost's edge proxy: HTTP and HTTPS (and raw TCP, optionally
//! TLS-terminated, and UDP) from clients to machines, with Fly's dynamic
//! routing.
//!
//! The crate is usable alone: it knows machines only through the
//! [`Backends`] trait (list an app's machines, start, stop, report checks),
//! which roost implements over its `Machines` service layer and tests
//! implement with loopback servers.
//!
//! # Routing
//!
//! A request's app comes from its host: `Host: <app>.<domain>[:port]`
//! (`:authority` for HTTP/2), with [`ProxyConfig::domain`] `localhost` by
//! default, so `http://myapp.localhost:8080/` works in a browser.
//!
//! **Ports.** Machines declare Fly `services`: `internal_port` plus public
//! `ports` with `handlers`, and a port is reached only by a listener that
//! does what its handlers say (as on Fly):
//!
//! | listener | stands for the public ports | reaches ports whose handlers are |
//! |---|---|---|
//! | HTTP ([`Proxy::serve`]) | [`ProxyConfig::http_ports`] (80) and its own port | `http`, without `tls` |
//! | HTTPS ([`Proxy::serve_tls`]) | [`ProxyConfig::https_ports`] (443) and its own port | `tls` and `http` |
//! | raw TCP ([`Proxy::serve_tcp`], no certificate) | one port, for one app | none |
//! | TLS TCP ([`Proxy::serve_tcp`] with a certificate) | one port, for one app | exactly `tls` |
//! | UDP ([`Proxy::serve_udp`]) | one port, for one app | any (services with `protocol: "udp"`) |
//!
//! Every listener but UDP reaches only `tcp` services (a missing
//! `protocol` is `tcp`), and UDP only `udp` ones. UDP forwards datagrams
//! per *flow*, the datagrams of one client address, each routed by its
//! first datagram and pinned to its machine (`udp.rs` explains the model);
//! the machine's program must listen on its private address (or `[::]`)
//! at `internal_port`, since roost has no `fly-global-services` address.
//! So a Fly app's `http_service` (`["http"]` on 80, `["tls", "http"]` on
//! 443) is reached over both HTTP and HTTPS, and a `["tls", "http"]` port
//! only over HTTPS. The certificate ([`TlsCertificate`], PEM files) is one
//! for every app, so it must name the hosts clients use: `*.<domain>`, or
//! each `<app>.<domain>` when the domain is a single label such as
//! `localhost` (TLS clients refuse a wildcard there). The TLS handshake
//! runs in the connection's task and is given
//! [`ProxyConfig::tls_handshake_timeout`] (10 s); failed handshakes are
//! logged at debug level. TLS TCP passes the plaintext to the machine, so
//! the machine sees what a raw TCP service sees.
//!
//! **Choice.** Among the app's machines serving the port that are started,
//! not cordoned, not failing a service check and not being autostopped:
//! the least loaded below its `soft_limit`; if none, autostart a stopped
//! machine (holding the request until the service port accepts, then
//! forwarding it); if none can start, the least loaded below its
//! `hard_limit`; if every machine is at its hard limit, the request waits
//! up to [`ProxyConfig::queue_timeout`] for capacity and then gets 503
//! with a body saying so. Load is the machine's in-flight count: requests
//! whose response body has not ended plus upgraded connections (HTTP
//! services count the same whether `concurrency.type` is `connections` or
//! `requests`: each in-flight request occupies one upstream connection)
//! and, for raw TCP services, open connections, and for UDP services,
//! live flows (see `udp.rs`: the datagrams of one client address, until
//! they pause for [`ProxyConfig::udp_flow_idle`]). Fly's defaults apply:
//! autostart on, autostop off, soft/hard limits 20/25.
//!
//! **Instances.** `fly-force-instance-id: <id>` sends the request to that
//! machine only (starting it if its service allows autostart, queueing at
//! its hard limit); when it cannot, 503 with the reason, never another
//! machine. `fly-prefer-instance-id` uses that machine when it can take
//! the request now and any machine otherwise.
//!
//! **fly-replay.** A response carrying `fly-replay` is not passed on: the
//! proxy replays the original request (method, headers, and body when it
//! was at most 1 MiB with a known length) to `instance=`, `prefer_instance=`,
//! `app=` or, with `elsewhere=true`, any machine but the one that answered,
//! adding `fly-replay-src: instance=<id>;region=<r>;t=<µs>;state=<state>`.
//! At most 3 replays per request.
//!
//! **Session affinity.** With [`ProxyConfig::affinity_keys`] (default:
//! header `Mcp-Session-Id`), the proxy remembers which machine served a
//! session key, whether the client sent it or the response handed it out
//! (response header or `Set-Cookie`), including after a replay. Requests
//! with that key go straight to that machine (starting it if needed, and
//! queueing at its hard limit) for as long as it exists, is uncordoned and
//! healthy; if it is gone, they are routed normally and re-pinned.
//!
//! # Forwarding
//!
//! Clients speak HTTP/1.1 or HTTP/2 (h2c, prior knowledge) on one port
//! over plain TCP; over TLS, HTTP/2 when they pick `h2` by ALPN (the
//! certificate offers `h2` and `http/1.1`) and HTTP/1.1 otherwise.
//! Upstream is HTTP/1.1 over pooled keep-alive connections, or HTTP/2
//! with the port's `http_options.h2_backend`. Bodies stream both ways
//! frame by frame (SSE and chunked responses reach the client chunk by
//! chunk). WebSocket and other HTTP/1.1 upgrades are passed through as
//! byte pipes. A stream or connection with no bytes for the port's
//! `http_options.idle_timeout` seconds (default
//! [`ProxyConfig::idle_timeout`], 10 minutes, so quiet long-lived streams
//! survive) is closed; there is no other time limit.
//!
//! Headers the machine receives (client-sent values of the same names are
//! replaced, except `X-Forwarded-For`, which is appended to):
//!
//! | header | value |
//! |---|---|
//! | `Fly-Client-IP` | the client's IP address (the TCP peer) |
//! | `X-Forwarded-For` | previous value, then the client's IP |
//! | `X-Forwarded-Proto` | `https` through the HTTPS listener, `http` otherwise |
//! | `X-Forwarded-Ssl` | `on` through the HTTPS listener; otherwise none (a client-sent one is removed) |
//! | `X-Forwarded-Port`, `Fly-Forwarded-Port` | the port the client connected to |
//! | `Fly-Request-Id` | a unique id (`<ULID>-<region>`), also returned to the client |
//! | `Fly-Region` | [`ProxyConfig::region`] |
//! | `fly-replay-src` | on replayed requests only (above) |
//!
//! Hop-by-hop headers (`Connection` and the headers it names,
//! `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade` except for an
//! upgrade) are not forwarded in either direction.
//!
//! # Background work
//!
//! [`Proxy::spawn_supervisor`] runs rounds when something changed or is
//! due (at most one per [`ProxyConfig::tick`]; `supervisor.rs`): a round
//! re-reads the apps whose machines changed, runs due health checks
//! ([`checks`](self) docs in `checks.rs`) and stops machines idle past
//! [`ProxyConfig::autostop_idle`] whose services have autostop, keeping
//! `min_machines_running`. With nothing started it sleeps until a
//! machine changes.

mod affinity;
mod backends;
mod body;
mod checks;
mod forward;
mod load;
mod pool;
mod replay;
mod route;
mod supervisor;
mod tcp;
mod tls;
mod tunnel;
mod udp;

pub use affinity::AffinityKey;
pub use backends::{BackendError, Backends, BoxFuture};
pub use body::ProxyBody;
pub use forward::MAX_REPLAY_BODY;
pub use tls::TlsCertificate;

use hyper_util::rt::TokioIo;
use roost_workers::{accept, Worker, Workers};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tls::Transport;
use tokio::net::TcpListener;

/// Settings of the proxy. `Default` gives roost's defaults.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Apps are `<app>.<domain>`.
    pub domain: String,
    /// Region reported in `Fly-Region` and `fly-replay-src`.
    pub region: String,
    /// Public ports the plain HTTP listener stands for, besides its own
    /// port.
    pub http_ports: Vec<u16>,
    /// Public ports the TLS listener stands for, besides its own port.
    pub https_ports: Vec<u16>,
    /// Longest TLS handshake; a client still silent then is disconnected.
    pub tls_handshake_timeout: Duration,
    /// How long a machine may have nothing in flight before autostop
    /// stops it.
    pub autostop_idle: Duration,
    /// How long a request waits for capacity when every machine is at its
    /// hard limit (or is being started or stopped by someone else).
    pub queue_timeout: Duration,
    /// Longest autostart: orchestrator start plus the port accepting.
    pub start_timeout: Duration,
    /// Idle timeout of streams and upgraded connections when a port sets
    /// no `http_options.idle_timeout`.
    pub idle_timeout: Duration,
    /// Session keys of the affinity cache.
    pub affinity_keys: Vec<AffinityKey>,
    /// An affinity entry unused this long is forgotten.
    pub affinity_ttl: Duration,
    pub affinity_max_entries: usize,
    /// Shortest time between two rounds of the supervisor (health-check
    /// scheduling, autostop), and before its first: rounds run when a
    /// machine changes or a check or autostop falls due, and changes
    /// closer together than this are handled in one round.
    pub tick: Duration,
    /// Machine lists are re-read at least this often even when the
    /// orchestrator's change counter does not move.
    pub snapshot_max_age: Duration,
    /// TCP connect timeout to machines.
    pub connect_timeout: Duration,
    /// A UDP flow with no datagram either way for this long ends and
    /// releases its unit of load, when its port sets no
    /// `http_options.idle_timeout`. Long enough for protocols that send
    /// keep-alives every 15 to 30 s (WireGuard, QUIC, game servers),
    /// short enough that autostop sees idle machines within minutes.
    pub udp_flow_idle: Duration,
    /// Flows one UDP listener keeps at once; datagrams of further client
    /// addresses are dropped until a flow ends.
    pub max_udp_flows: usize,
    /// `SO_MARK` of the sockets UDP flows open to machines, so that a host
    /// input filter can accept the machines' replies on these sockets and
    /// nothing else (roost's does: `roost_net::firewall`). Setting a mark
    /// needs `CAP_NET_ADMIN`. `None` leaves the sockets unmarked.
    pub udp_socket_mark: Option<u32>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            domain: "localhost".into(),
            region: "local".into(),
            http_ports: vec![80],
            https_ports: vec![443],
            tls_handshake_timeout: Duration::from_secs(10),
            autostop_idle: Duration::from_secs(300),
            queue_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            affinity_keys: vec![AffinityKey::Header(http::HeaderName::from_static(
                "mcp-session-id",
            ))],
            affinity_ttl: Duration::from_secs(3600),
            affinity_max_entries: 100_000,
            tick: Duration::from_secs(1),
            snapshot_max_age: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            udp_flow_idle: Duration::from_secs(60),
            max_udp_flows: 4096,
            udp_socket_mark: None,
        }
    }
}

/// Errors starting the proxy or loading its certificate.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot read the listener's address: {0}")]
    Listener(#[source] std::io::Error),
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    TlsRead {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS {what} file {} is not valid PEM: {source}", path.display())]
    TlsPem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the TLS certificate file {} has no certificate (a PEM \"BEGIN CERTIFICATE\" block)", .0.display())]
    TlsNoCertificate(PathBuf),
    #[error("the TLS key file {} has no private key (a PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block)", .0.display())]
    TlsNoKey(PathBuf),
    #[error("the private key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    TlsKeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the TLS certificate {} with the key {} is not usable: {source}", cert.display(), key.display())]
    TlsUnusable {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

pub(crate) struct Shared {
    pub(crate) config: Arc<ProxyConfig>,
    pub(crate) router: route::Router,
    pub(crate) affinity: affinity::AffinityCache,
    pub(crate) checker: Arc<checks::Checker>,
    /// Wakes the supervisor for a round: sent when work it started ends
    /// (a check, an autostop), whose follow-up it must schedule; closed
    /// once the proxy and that work are gone.
    pub(crate) supervisor_wake: tokio::sync::watch::Sender<()>,
    /// `Fly-Region`'s value.
    pub(crate) region_header: ::http::HeaderValue,
    request_seed: u64,
    request_counter: AtomicU64,
}

impl Shared {
    /// A ULID-shaped id (48-bit milliseconds, 80 bits unique in this
    /// process and unpredictable across processes) plus the region, like
    /// Fly's `Fly-Request-Id`.
    pub(crate) fn request_id(&self) -> String {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let low = splitmix(self.request_seed ^ n) as u128 | ((n as u128 & 0xffff) << 64);
        let value = (ms << 80) | (low & ((1u128 << 80) - 1));
        let mut id = String::with_capacity(27 + self.config.region.len());
        for i in (0..26).rev() {
            id.push(ALPHABET[((value >> (i * 5)) & 31) as usize] as char);
        }
        id.push('-');
        id.push_str(&self.config.region);
        id
    }
}

/// Serves HTTP connections of one listener on the runtime it is used on,
/// with that runtime's pool of machine connections.
struct HttpSite<T> {
    shared: Arc<Shared>,
    listen: route::Listen,
    local_port: u16,
    clients: Arc<forward::Clients>,
    transport: T,
}

impl<T: Transport> Worker for HttpSite<T> {
    /// Serves `stream` in a task of its own.
    fn serve(&self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let conn = Arc::new(forward::ConnInfo::new(
            peer,
            self.local_port,
            self.listen.clone(),
            self.clients.clone(),
        ));
        let shared = self.shared.clone();
        let transport = self.transport.clone();
        tokio::spawn(async move {
            let Some(stream) = transport.open(stream, peer).await else {
                return;
            };
            let server = T::http_server(&stream);
            let service = hyper::service::service_fn(move |req| {
                forward::handle(shared.clone(), conn.clone(), req)
            });
            if let Err(err) = server
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %forward::error_chain(&*err), "client connection ended");
            }
        });
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The edge proxy. Cheap to clone; every clone shares routing state.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    pub fn new(backends: Arc<dyn Backends>, config: ProxyConfig) -> Proxy {
        let config = Arc::new(config);
        let supervisor_wake = tokio::sync::watch::Sender::new(());
        Proxy {
            shared: Arc::new(Shared {
                router: route::Router::new(backends, config.clone()),
                affinity: affinity::AffinityCache::new(
                    config.affinity_keys.clone(),
                    config.affinity_ttl,
                    config.affinity_max_entries,
                ),
                checker: Arc::new(checks::Checker::new(supervisor_wake.clone())),
                supervisor_wake,
                region_header: ::http::HeaderValue::from_str(&config.region)
                    .unwrap_or_else(|_| ::http::HeaderValue::from_static("local")),
                request_seed: rand::random(),
                request_counter: AtomicU64::new(0),
                config,
            }),
        }
    }

    /// Serves HTTP/1.1 and h2c on `listener` until `shutdown` resolves.
    /// Connections already open keep going until they close.
    ///
    /// Each call has its own pool of upstream connections, whose tasks run
    /// on the calling runtime. For throughput, use [`Proxy::serve_workers`]:
    /// one single-threaded runtime per core, each serving its share of the
    /// connections, so a request never changes threads, like in an nginx
    /// worker, which saves the cross-thread wake-ups that dominate a
    /// multi-threaded runtime's profile here.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyError> {
        self.serve_http(listener, tls::Plain, shutdown).await
    }

    /// Serves HTTPS on `listener` with `certificate` until `shutdown`
    /// resolves: HTTP/2 when the client picks `h2` by ALPN, HTTP/1.1
    /// otherwise. Otherwise as [`Proxy::serve`].
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        certificate: &TlsCertificate,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyError> {
        let transport = certificate.for_http(self.shared.config.tls_handshake_timeout);
        self.serve_http(listener, transport, shutdown).await
    }

    async fn serve_http<T: Transport>(
        &self,
        listener: TcpListener,
        transport: T,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyError> {
        let local = listener.local_addr().map_err(ProxyError::Listener)?;
        let site = self.http_site(local.port(), transport);
        tokio::pin!(shutdown);
        while let Some((stream, peer)) = accept(&listener, &mut shutdown).await {
            site.serve(stream, peer);
        }
        Ok(())
    }

    /// What serving HTTP connections of one listener on one runtime needs.
    fn http_site<T: Transport>(&self, local_port: u16, transport: T) -> HttpSite<T> {
        let config = &self.shared.config;
        let mut ports = if T::TLS {
            config.https_ports.clone()
        } else {
            config.http_ports.clone()
        };
        ports.push(local_port);
        HttpSite {
            shared: self.shared.clone(),
            listen: route::Listen::Http {
                ports: Arc::from(ports),
                tls: T::TLS,
            },
            local_port,
            clients: Arc::new(forward::Clients::new(config)),
            transport,
        }
    }

    /// Serves HTTP on `listener` from `workers` threads, each running a
    /// single-threaded runtime, until `shutdown` resolves. The background
    /// work ([`Proxy::spawn_supervisor`]) stays on the caller's runtime.
    pub async fn serve_workers(
        &self,
        listener: std::net::TcpListener,
        workers: usize,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyError> {
        self.serve_http_workers(listener, workers, tls::Plain, shutdown)
            .await
    }

    /// Serves HTTPS with `certificate` on `listener` from `workers`
    /// threads, as [`Proxy::serve_workers`] serves HTTP.
    pub async fn serve_tls_workers(
        &self,
        listener: std::net::TcpListener,
        workers: usize,
        certificate: &TlsCertificate,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyError> {
        let transport = certificate.for_http(self.shared.config.tls_handshake_timeout);
        self.serve_http_workers(listener, workers, transport, shutdown)
            .await
    }

    /// One thread with a single-threaded runtime per worker, each with
    /// its own [`HttpSite`] (so its own pool of machine connections); the
    /// caller's task accepts and deals connections out (roost-workers).
    async fn serve_http_workers<T: Transport>(
        &self,
        listener: std::net::TcpListener,
        workers: usize,
        transport: T,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyError> {
        listener
            .set_nonblocking(true)
            .map_err(ProxyError::Listener)?;
        let listener = TcpListener::from_std(listener).map_err(ProxyError::Listener)?;
        let local_port = listener.local_addr().map_err(ProxyError::Listener)?.port();
        let sites = (0..workers.max(1))
            .map(|_| self.http_site(local_port, transport.clone()))
            .collect();
        let workers = Workers::start("roost-proxy", sites).map_err(ProxyError::Listener)?;
        workers.serve(&listener, shutdown).await;
        Ok(())
    }

    /// Serves a raw TCP service: connections to `listener` go to machines
    /// of `app` with a service on public port `port` whose handlers are
    /// none (`tls` is `None`) or exactly `["tls"]` (`tls` is the
    /// certificate: the proxy terminates TLS and passes the plaintext on).
    pub async fn serve_tcp(
        &self,
        listener: TcpListener,
        app: &str,
        port: u16,
        tls: Option<&TlsCertificate>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyError> {
        match tls {
            None => {
                self.serve_raw(listener, app, port, tls::Plain, shutdown)
                    .await
            }
            Some(certificate) => {
                let transport = certificate.for_tcp(self.shared.config.tls_handshake_timeout);
                self.serve_raw(listener, app, port, transport, shutdown)
                    .await
            }
        }
    }

    async fn serve_raw<T: Transport>(
        &self,
        listener: TcpListener,
        app: &str,
        port: u16,
        transport: T,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyError> {
        let app: Arc<str> = Arc::from(app);
        let listen = route::Listen::Tcp { port, tls: T::TLS };
        tokio::pin!(shutdown);
        while let Some((stream, peer)) = accept(&listener, &mut shutdown).await {
            let (shared, app, listen) = (self.shared.clone(), app.clone(), listen.clone());
            let transport = transport.clone();
            tokio::spawn(async move {
                if let Some(stream) = transport.open(stream, peer).await {
                    tcp::handle(shared, app, listen, stream).await;
                }
            });
        }
        Ok(())
    }

    /// Serves a UDP service: datagrams to `socket` go to machines of `app`
    /// with a `udp` service on public port `port`, one flow per client
    /// address (see `udp.rs`), until `shutdown` resolves; flows end with
    /// it, since their replies leave through `socket`.
    pub async fn serve_udp(
        &self,
        socket: tokio::net::UdpSocket,
        app: &str,
        port: u16,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        udp::serve(self.shared.clone(), socket, Arc::from(app), port, shutdown).await
    }

    /// Starts the supervisor (health checks, autostop). It ends when every
    /// clone of this proxy is dropped.
    pub fn spawn_supervisor(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(supervisor::run(Arc::downgrade(&self.shared)))
    }

    /// Requests and connections in flight to a machine (for tests and
    /// diagnostics).
    pub fn in_flight(&self, machine_id: &str) -> usize {
        self.shared
            .router
            .slot(machine_id)
            .map(|slot| slot.load())
            .unwrap_or(0)
    }
}
