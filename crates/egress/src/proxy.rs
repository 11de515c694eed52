//! The proxy: HTTP/1.1 forward proxying and CONNECT tunnels, each request
//! decided by its app's policy, dialed through the destination guard,
//! metered and logged.

use crate::answer::{self, Answer};
use crate::forward::{self, Failed, Head, Next};
use crate::io::{Idle, Metered};
use crate::ledger::{ConnectionSlot, Decision, Ledger, MachineMeter, Tally};
use crate::policy::{Destination, Policy};
use crate::splice;
use bytes::{Bytes, BytesMut};
use http::header::HOST;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use roost_destination_guard::{Guard, GuardError, Origin};
use roost_tokenizer::Tokenizer;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head (start line and headers) a client may send:
/// larger ones are refused (431).
const MAX_HEAD_BYTES: usize = 64 * 1024;
pub(crate) const PROXY_TOKENIZER: &str = "proxy-tokenizer";

/// Bodies of the proxy's answers: the upstream's, or its own.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// A machine, as the proxy names it in logs, counters and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRef {
    pub app: String,
    pub id: String,
}

/// What the proxy knows of machines and apps, from whoever runs it
/// (roost's service layer; a table in tests).
pub trait Directory: Send + Sync + 'static {
    /// The machine whose private address `peer` is, if any. Clients are
    /// told apart by address: a machine cannot choose its own.
    fn machine_at(&self, peer: IpAddr) -> Option<MachineRef>;
    /// The app's current policy (asked at every request, so a change
    /// applies to the next request at once); `None` when the app is gone.
    fn policy(&self, app: &str) -> Option<Arc<Policy>>;
}

/// Settings of the proxy.
#[derive(Clone)]
pub struct EgressConfig {
    /// What no policy can open: the host, private ranges, metadata
    /// addresses, other apps' machines.
    pub guard: Guard,
    /// Where `Proxy-Tokenizer` requests get their credentials; without it
    /// they are refused.
    pub tokenizer: Option<Tokenizer>,
    /// Client connections one machine may hold open at once. As many
    /// more are answered 429 and closed; past those, a new connection is
    /// closed unanswered, so a machine looping on connect holds at most
    /// twice this many of the host's descriptors.
    pub max_connections_per_machine: usize,
    /// Time a client has to send each request head, from the moment the
    /// proxy waits for it (keep-alive idle time included): slowloris bound.
    pub header_timeout: Duration,
    /// A client connection with no byte either way for this long is
    /// closed (tunnels and streamed bodies included).
    pub idle_timeout: Duration,
    /// Upper bound on resolving and connecting to a destination.
    pub connect_timeout: Duration,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            guard: Guard::default(),
            tokenizer: None,
            max_connections_per_machine: 256,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The egress proxy. Cheap to clone.
#[derive(Clone)]
pub struct EgressProxy {
    shared: Arc<Shared>,
}

struct Shared {
    config: EgressConfig,
    directory: Arc<dyn Directory>,
    ledger: Arc<Ledger>,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl EgressProxy {
    pub fn new(
        config: EgressConfig,
        directory: Arc<dyn Directory>,
        ledger: Arc<Ledger>,
    ) -> EgressProxy {
        let tls = config
            .tokenizer
            .as_ref()
            .map(|tokenizer| tokio_rustls::TlsConnector::from(tokenizer.upstream_tls()));
        EgressProxy {
            shared: Arc::new(Shared {
                config,
                directory,
                ledger,
                tls,
            }),
        }
    }

    /// The proxy's server: `count` worker threads, each with a runtime of
    /// its own (roost-workers). Feed them connections with
    /// [`Workers::serve`](roost_workers::Workers::serve).
    pub fn workers(&self, count: usize) -> std::io::Result<roost_workers::Workers> {
        let sites = (0..count.max(1)).map(|_| self.clone()).collect();
        roost_workers::Workers::start("roost-egress", sites)
    }
}

/// Who one client connection is, decided when it is accepted.
enum Client {
    Machine {
        machine: MachineRef,
        origin: Origin,
        meter: Arc<MachineMeter>,
        _slot: ConnectionSlot,
    },
    /// Every request on the connection gets this answer, then it closes.
    Refused {
        answer: Answer,
        _slot: Option<ConnectionSlot>,
    },
}

impl roost_workers::Worker for EgressProxy {
    fn serve(&self, stream: TcpStream, peer: SocketAddr) {
        let Some(client) = self.admit(peer) else {
            tracing::debug!(%peer, "egress client closed at once: too many connections turned away");
            return;
        };
        let proxy = self.clone();
        tokio::spawn(async move { proxy.converse(Arc::new(client), stream, peer).await });
    }
}

impl EgressProxy {
    /// Serves one client connection: a machine's requests of the spliced
    /// forward path here, one after the other, until one is not; hyper
    /// serves the rest of the connection from there (and all of a refused
    /// client's).
    async fn converse(self, client: Arc<Client>, mut stream: TcpStream, peer: SocketAddr) {
        let mut buffered = BytesMut::new();
        if let Ok(request) = self.exchange_for(&client) {
            if !request.spliced(&mut stream, &mut buffered, peer).await {
                return;
            }
        }
        self.serve_hyper(client, stream, buffered.freeze(), peer)
            .await
    }

    /// Hyper serves the connection, reading `buffered` first.
    async fn serve_hyper(
        &self,
        client: Arc<Client>,
        stream: TcpStream,
        buffered: Bytes,
        peer: SocketAddr,
    ) {
        let config = &self.shared.config;
        let proxy = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let (proxy, client) = (proxy.clone(), client.clone());
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(client, req).await) }
        });
        let io = Idle::new(stream, buffered, config.idle_timeout);
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        if let Err(err) = connection.await {
            tracing::debug!(%peer, error = %err, "egress client connection ended with an error");
        }
    }

    /// Places a new client connection: a known machine below its limit, or
    /// a refusal to answer; `None` when the connection is to be closed
    /// unanswered (its machine has as many refusals pending as its limit).
    fn admit(&self, peer: SocketAddr) -> Option<Client> {
        let shared = &self.shared;
        let Some(machine) = shared.directory.machine_at(peer.ip()) else {
            return Some(Client::Refused {
                answer: answer::not_a_machine(peer.ip()),
                _slot: None,
            });
        };
        let meter = shared.ledger.meter(&machine.id);
        let limit = shared.config.max_connections_per_machine;
        if let Some(slot) = meter.try_open(limit) {
            return Some(Client::Machine {
                origin: shared.config.guard.origin_of(peer.ip()),
                machine,
                meter,
                _slot: slot,
            });
        }
        let slot = meter.try_turn_away(limit)?;
        Some(Client::Refused {
            answer: answer::too_many_connections(&machine, limit),
            _slot: Some(slot),
        })
    }

    /// A machine's requests, or a refused client's answer.
    fn exchange_for<'a>(&'a self, client: &'a Arc<Client>) -> Result<Exchange<'a>, &'a Answer> {
        match &**client {
            Client::Machine {
                machine,
                origin,
                meter,
                ..
            } => Ok(Exchange {
                shared: &self.shared,
                client,
                machine,
                origin: *origin,
                meter,
            }),
            Client::Refused { answer, .. } => Err(answer),
        }
    }

    async fn handle(&self, client: Arc<Client>, req: Request<Incoming>) -> Response<ProxyBody> {
        let request = match self.exchange_for(&client) {
            Ok(request) => request,
            Err(answer) => return answer.clone().closing().into_response(),
        };
        let outcome = if req.method() == Method::CONNECT {
            request.tunnel(req).await
        } else if req.headers().contains_key(PROXY_TOKENIZER) {
            request.tokenized(req).await
        } else {
            request.forward(req).await
        };
        outcome.unwrap_or_else(Answer::into_response)
    }
}

/// One request of one machine.
struct Exchange<'a> {
    shared: &'a Shared,
    /// The client connection, whose slot a tunnel keeps once hyper has
    /// let go of the connection.
    client: &'a Arc<Client>,
    machine: &'a MachineRef,
    origin: Origin,
    meter: &'a Arc<MachineMeter>,
}

/// A destination connection, metered for its decision.
type Upstream = Metered<TcpStream>;
/// A client connection, bounded in idle time.
type ClientStream = Idle<TcpStream>;

impl Exchange<'_> {
    /// CONNECT host:port: a tunnel the proxy does not look into.
    async fn tunnel(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, Answer> {
        let authority = req.uri().authority().ok_or_else(|| {
            answer::bad_request("CONNECT needs an authority-form target: CONNECT host:port")
        })?;
        let port = authority
            .port_u16()
            .ok_or_else(|| answer::bad_request("CONNECT needs a port: CONNECT host:port"))?;
        let destination = destination(authority.host(), port)?;
        let upstream = self.open(&destination, "CONNECT", false).await?;
        let admitted = self.client.clone();
        let idle = self.shared.config.idle_timeout;
        tokio::spawn(async move {
            let _slot = admitted;
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    tracing::debug!(error = %err, "CONNECT client left before the tunnel");
                    return;
                }
            };
            let client = match upgraded.downcast::<TokioIo<ClientStream>>() {
                Ok(client) => client,
                Err(_) => {
                    tracing::error!(
                        "CONNECT: the upgraded connection is not the client's TCP stream"
                    );
                    return;
                }
            };
            let (upstream, tally) = upstream.into_parts();
            let (stream, unread) = client.io.into_inner().into_inner();
            let early = [&client.read_buf[..], &unread[..]].concat();
            let relayed = splice::relay(stream, upstream, &early, &tally, idle);
            if let Err(err) = relayed.await {
                tracing::debug!(error = %err, "egress tunnel ended");
            }
        });
        Ok(Response::new(answer::empty()))
    }

    /// An absolute-form `http://` request, forwarded on a connection of
    /// its own.
    async fn forward(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, Answer> {
        let (mut parts, body) = req.into_parts();
        let destination = outbound(&mut parts)?;
        let upstream = self
            .open(&destination, parts.method.as_str(), false)
            .await?;
        exchange(upstream, Request::from_parts(parts, body), &destination).await
    }

    /// The client's requests of the spliced forward path, one after the
    /// other; `true` when one is hyper's (the connection is then hyper's
    /// from `buffered` on), `false` when the connection is over.
    async fn spliced(
        &self,
        client: &mut TcpStream,
        buffered: &mut BytesMut,
        peer: SocketAddr,
    ) -> bool {
        let timeout = self.shared.config.header_timeout;
        loop {
            let head = match forward::next_head(client, buffered, MAX_HEAD_BYTES, timeout).await {
                Next::Request(head) => head,
                Next::Hyper => return true,
                Next::Closed => return false,
            };
            match self.forward_spliced(client, &head).await {
                Ok(true) => {}
                Ok(false) => {
                    forward::linger(client).await;
                    return false;
                }
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "egress forward ended midway");
                    return false;
                }
            }
        }
    }

    /// A request of the spliced forward path (`forward.rs`): decided and
    /// dialed as [`Exchange::forward`] does, relayed by `forward::exchange`.
    /// Answers whether the client connection may carry another request.
    async fn forward_spliced(&self, client: &mut TcpStream, head: &Head) -> io::Result<bool> {
        let upstream = self.open(&head.destination, head.parts.method.as_str(), false);
        let answer = match upstream.await {
            Ok(upstream) => {
                let (upstream, tally) = upstream.into_parts();
                let idle = self.shared.config.idle_timeout;
                match forward::exchange(client, upstream, head, &tally, idle).await {
                    Ok(keep) => return Ok(keep),
                    Err(Failed::Broken(err)) => return Err(err),
                    Err(Failed::Answer(answer)) => answer,
                }
            }
            Err(answer) => answer,
        };
        let close = head.close || answer.close;
        client
            .write_all(&forward::answer_bytes(&answer, close))
            .await?;
        Ok(!close)
    }

    /// A request carrying `Proxy-Tokenizer`: checked and injected by the
    /// tokenizer, then sent over TLS to where it goes (as the tokenizer's
    /// own port would), under the app's policy.
    async fn tokenized(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, Answer> {
        let (Some(tokenizer), Some(tls)) = (&self.shared.config.tokenizer, &self.shared.tls) else {
            return Err(answer::bad_request(
                "this egress proxy has no tokenizer: send requests without Proxy-Tokenizer",
            ));
        };
        let method = req.method().to_string();
        let prepared = tokenizer
            .prepare(req)
            .await
            .map_err(|err| Answer::new(err.status(), err.to_string()))?;
        let destination = destination(&prepared.host, prepared.port)?;
        let upstream = self.open(&destination, &method, true).await?;
        let mut request = prepared.request;
        *request.uri_mut() = origin_form(request.uri())?;
        if !prepared.tls {
            return exchange(upstream, request, &destination).await;
        }
        let name =
            rustls::pki_types::ServerName::try_from(prepared.host.clone()).map_err(|_| {
                answer::bad_request("the request target's host is not a TLS server name")
            })?;
        let upstream = tls
            .connect(name, upstream)
            .await
            .map_err(|err| answer::upstream_failed(&destination, &format!("TLS: {err}")))?;
        exchange(upstream, request, &destination).await
    }

    /// Decides `destination` by the app's policy and the guard, records the
    /// decision and dials: a metered connection, or the refusal to answer.
    async fn open(
        &self,
        destination: &Destination,
        method: &str,
        tokenizer: bool,
    ) -> Result<Upstream, Answer> {
        let shared = self.shared;
        let decision = |allowed: bool, rule: String| Decision {
            machine_id: self.machine.id.clone(),
            host: destination.host.clone(),
            port: destination.port,
            method: method.to_string(),
            allowed,
            rule,
            tokenizer,
        };
        let app = &self.machine.app;
        let rule = match shared.directory.policy(app) {
            Some(policy) => policy.decide(destination),
            None => return Err(answer::app_gone(self.machine)),
        };
        if !rule.allows() {
            self.refused(decision(false, rule.to_string()), destination);
            return Err(answer::refused_by_policy(self.machine, destination, &rule));
        }
        let connected = shared
            .config
            .guard
            .connect(
                self.origin,
                &destination.host,
                destination.port,
                shared.config.connect_timeout,
            )
            .await;
        match connected {
            Ok(connected) => {
                let record = shared.ledger.record(app, decision(true, rule.to_string()));
                tracing::debug!(machine = %self.machine.id, %destination, %rule, addr = %connected.addr, "egress allowed");
                if let Err(err) = connected.stream.set_nodelay(true) {
                    tracing::debug!(error = %err, "cannot set TCP_NODELAY upstream");
                }
                let tally = Tally::new(record, self.meter.clone());
                Ok(Metered::new(connected.stream, tally))
            }
            Err(err @ GuardError::Refused { .. }) => {
                let refusal = *err.refusal().expect("a refusal");
                self.refused(decision(false, format!("guard: {refusal}")), destination);
                Err(answer::refused_by_guard(
                    self.machine,
                    destination,
                    &rule,
                    &refusal,
                ))
            }
            Err(err) => {
                let record = shared.ledger.record(app, decision(true, rule.to_string()));
                record.failed(err.to_string());
                Err(answer::upstream_failed(destination, &err.to_string()))
            }
        }
    }

    fn refused(&self, decision: Decision, destination: &Destination) {
        tracing::info!(machine = %self.machine.id, app = %self.machine.app, %destination, rule = %decision.rule, "egress refused");
        self.shared.ledger.record(&self.machine.app, decision);
    }
}

/// `destination` for a host and port a client named, or a 400.
fn destination(host: &str, port: u16) -> Result<Destination, Answer> {
    Destination::new(host, port).map_err(|reason| {
        answer::bad_request(format!("{host:?} is not a host to connect to: {reason}"))
    })
}

/// Checks an absolute-form `http://` request's target and Host header, and
/// makes the request what its upstream gets: origin form, its Host the
/// target's, hop-by-hop headers stripped. The destination it names, or
/// the 400 that refuses it.
pub(crate) fn outbound(parts: &mut Parts) -> Result<Destination, Answer> {
    let uri = &parts.uri;
    if uri.scheme_str() != Some("http") {
        return Err(answer::bad_request(
            "the egress proxy takes absolute-form plain-HTTP requests (GET http://host/path) and CONNECT host:port for TLS",
        ));
    }
    let authority = uri
        .authority()
        .filter(|a| !a.as_str().contains('@'))
        .ok_or_else(|| {
            answer::bad_request(
                "the request target must be http://host[:port]/path, without user info",
            )
        })?;
    let mut hosts = parts.headers.get_all(HOST).iter();
    if let Some(host) = hosts.next() {
        if hosts.next().is_some() {
            return Err(answer::bad_request(
                "the request has more than one Host header: send one, naming the request target's host",
            ));
        }
        if host
            .to_str()
            .map_or(true, |h| h.parse::<http::uri::Authority>().is_err())
        {
            return Err(answer::bad_request(
                "the Host header is not host[:port]: send the request target's host, or no Host header",
            ));
        }
        if !roost_tokenizer::host_header_names(host, authority.host(), authority.port_u16()) {
            return Err(answer::bad_request(format!(
                "the Host header disagrees with the request target {authority}: the proxy dials the target, so they must name the same host"
            )));
        }
    }
    let destination = destination(authority.host(), authority.port_u16().unwrap_or(80))?;
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|_| answer::bad_request("the request target's host is not a valid Host header"))?;
    let path = origin_form(&parts.uri)?;
    roost_tokenizer::strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(HOST, host);
    parts.uri = path;
    Ok(destination)
}

/// The request target as an origin server wants it: path and query only.
fn origin_form(uri: &Uri) -> Result<Uri, Answer> {
    uri.path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| answer::bad_request("the request target's path is not valid"))
}

/// Sends `request` on a new HTTP/1.1 connection over `io` and answers
/// with the upstream's response, streamed. The connection lives until the
/// response body ends.
async fn exchange<T, B>(
    io: T,
    request: Request<B>,
    destination: &Destination,
) -> Result<Response<ProxyBody>, Answer>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let failed = |err: hyper::Error| {
        answer::upstream_failed(destination, &roost_tokenizer::error_chain(&err))
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(failed)?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "egress upstream connection ended with an error");
        }
    });
    let response = sender.send_request(request).await.map_err(failed)?;
    let (mut parts, body) = response.into_parts();
    roost_tokenizer::strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, body.boxed_unsync()))
}

impl Answer {
    fn into_response(self) -> Response<ProxyBody> {
        let mut response = Response::new(answer::json(&self.body));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.close {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
