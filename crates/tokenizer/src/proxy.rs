//! The proxy itself: checks, injection and a pooled TLS client upstream.

use crate::connect::{refusal_in, GuardedConnector};
use crate::error::{Result, TokenizerError};
use crate::header::{proxy_tokens, ProxyTokenizerHeader};
use crate::inject::{self, Injection};
use crate::keys::{OpenKey, SealKey};
use crate::secret::Secret;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use roost_destination_guard::{Guard, Origin};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROXY_TOKENIZER: &str = "proxy-tokenizer";
/// Bodies are buffered only for processors that sign them (HMAC without
/// `msg`, SigV4 without `X-Amz-Content-Sha256`), up to this size.
const MAX_SIGNED_BODY: usize = 10 * 1024 * 1024;
const MAX_SECRETS_PER_REQUEST: usize = 16;
/// Opened secrets kept in memory, keyed by the digest of their sealed
/// form: opening costs an X25519 operation per request otherwise. A sealed
/// token always opens to the same secret, so the cache cannot go stale.
const SECRET_CACHE_ENTRIES: usize = 4096;
/// Upstream pools kept per worker, one per client origin; past this many
/// the worker starts afresh (connections in use keep their pool).
const POOLS_PER_WORKER: usize = 1024;
/// Headers that describe one hop, never forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    PROXY_TOKENIZER,
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

type ProxyBody = Either<Incoming, Full<Bytes>>;
type UpstreamClient = Client<HttpsConnector<GuardedConnector>, ProxyBody>;

/// Host settings of the tokenizer.
#[derive(Debug, Clone, Default)]
pub struct TokenizerConfig {
    /// PEM files of CA certificates trusted for upstreams besides the
    /// system roots.
    pub extra_ca_files: Vec<PathBuf>,
    /// Upstreams (`host:port`, as in request targets) reached over plain
    /// HTTP instead of TLS. For tests only: a credential sent there crosses
    /// the network in the clear.
    pub plain_http_upstreams: Vec<String>,
    /// What upstreams may be dialed for a client (roost-destination-guard):
    /// never the host, private ranges, metadata addresses or other apps'
    /// machines, unless named as an exception there.
    pub guard: Guard,
}

/// The tokenizer proxy. Cheap to clone.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

/// What every connection shares.
struct Inner {
    key: OpenKey,
    /// Every site's connector gets a copy.
    tls: rustls::ClientConfig,
    plain_http: HashSet<String>,
    cache: Mutex<HashMap<[u8; 32], Arc<Secret>>>,
    guard: Guard,
}

/// Serves connections on one runtime, with that runtime's pools of
/// upstream connections (whose tasks run where their requests do): one
/// pool per client origin, because the guard allows each origin other
/// destinations, and a pooled connection must never serve a client the
/// guard would not have let dial it.
#[derive(Clone)]
struct Site {
    inner: Arc<Inner>,
    pools: Arc<Mutex<HashMap<Origin, UpstreamClient>>>,
}

/// One client connection's view: the shared state and its origin's pool.
#[derive(Clone)]
struct Handler {
    inner: Arc<Inner>,
    client: UpstreamClient,
}

impl Tokenizer {
    pub fn new(key: OpenKey, config: &TokenizerConfig) -> Result<Tokenizer> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            if let Err(err) = roots.add(cert) {
                tracing::debug!(error = %err, "skipping unusable system root certificate");
            }
        }
        for file in &config.extra_ca_files {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| {
                    TokenizerError::Config(format!("cannot read CA file {}: {e}", file.display()))
                })?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    TokenizerError::Config(format!("bad certificate in {}: {e}", file.display()))
                })?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TokenizerError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Tokenizer {
            inner: Arc::new(Inner {
                key,
                tls,
                plain_http: config
                    .plain_http_upstreams
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                cache: Mutex::new(HashMap::new()),
                guard: config.guard.clone(),
            }),
        })
    }

    /// A site with no upstream connections yet.
    fn site(&self) -> Site {
        Site {
            inner: self.inner.clone(),
            pools: Arc::default(),
        }
    }

    /// The public key clients seal secrets to.
    pub fn seal_key(&self) -> SealKey {
        self.inner.key.seal_key()
    }

    /// Checks one request and injects its credentials, sending nothing:
    /// for a proxy that dials the upstream itself (roost's egress proxy,
    /// which meters and guards its own connections). The answer says where
    /// the request goes and whether over TLS ([`Tokenizer::upstream_tls`]).
    pub async fn prepare<B>(&self, req: Request<B>) -> Result<Prepared<B>>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.inner.prepare(req).await
    }

    /// The TLS settings upstreams are reached with: the system roots plus
    /// [`TokenizerConfig::extra_ca_files`].
    pub fn upstream_tls(&self) -> Arc<rustls::ClientConfig> {
        Arc::new(self.inner.tls.clone())
    }

    /// The proxy's server: `count` worker threads, each serving
    /// connections on a runtime of its own with its own pool of upstream
    /// connections, so a proxied request never wakes another thread (see
    /// roost-workers). Feed them connections with
    /// [`Workers::serve`](roost_workers::Workers::serve) on any number of
    /// listeners; dropping them closes their connections.
    pub fn workers(&self, count: usize) -> std::io::Result<roost_workers::Workers> {
        let sites = (0..count.max(1)).map(|_| self.site()).collect();
        roost_workers::Workers::start("roost-tokenizer", sites)
    }
}

/// Serves HTTP/1.1 proxy clients.
impl roost_workers::Worker for Site {
    fn serve(&self, stream: tokio::net::TcpStream, peer: std::net::SocketAddr) {
        let handler = self.handler(self.inner.guard.origin_of(peer.ip()));
        let service = hyper::service::service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, std::convert::Infallible>(handler.handle(req).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "tokenizer client connection ended with an error");
            }
        });
    }
}

impl Site {
    /// The handler of a client of `origin`, with that origin's pool.
    fn handler(&self, origin: Origin) -> Handler {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if pools.len() >= POOLS_PER_WORKER && !pools.contains_key(&origin) {
            pools.clear();
        }
        let client = pools
            .entry(origin)
            .or_insert_with(|| {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(self.inner.tls.clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(GuardedConnector {
                        guard: self.inner.guard.clone(),
                        origin,
                    });
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .build(connector)
            })
            .clone();
        Handler {
            inner: self.inner.clone(),
            client,
        }
    }
}

impl Handler {
    async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        // For the log lines: cheap clones of the request line (shared
        // bytes), formatted only when a line is written.
        let method = req.method().clone();
        let uri = req.uri().clone();
        let host = uri.authority().map_or("", |a| a.as_str());
        let path = uri.path();
        let response = match self.forward(req).await {
            Ok(response) => response,
            Err(err) => {
                tracing::warn!(%method, %host, %path, status = err.status().as_u16(), error = %err, "tokenizer refused a request");
                let mut response =
                    Response::new(Either::Right(Full::new(Bytes::from(format!("{err}\n")))));
                *response.status_mut() = err.status();
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                return response;
            }
        };
        tracing::debug!(%method, %host, %path, status = response.status().as_u16(), micros = started.elapsed().as_micros() as u64, "tokenizer forwarded a request");
        response
    }

    async fn forward(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>> {
        let prepared = self.inner.prepare(req).await?;
        let upstream = prepared.authority();
        let response =
            self.client
                .request(prepared.request)
                .await
                .map_err(|e| match refusal_in(&e) {
                    Some(refusal) => TokenizerError::Destination(format!(
                        "the tokenizer does not dial {refusal}"
                    )),
                    None => TokenizerError::Upstream(format!(
                        "upstream {upstream} failed: {}",
                        error_chain(&e)
                    )),
                })?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Either::Left(body)))
    }
}

/// A request the tokenizer has checked and injected, ready to be sent to
/// its upstream: its target is absolute (`https://host[:port]/..`, or
/// `http://` for a plain-HTTP test upstream), its headers are the ones to
/// send.
pub struct Prepared<B> {
    pub request: Request<Either<B, Full<Bytes>>>,
    /// Whether the upstream is reached over TLS.
    pub tls: bool,
    /// The host to dial (and to name in TLS).
    pub host: String,
    /// The port to dial.
    pub port: u16,
}

impl<B> Prepared<B> {
    /// `host[:port]` as the tokenizer's messages name the upstream.
    pub fn authority(&self) -> String {
        self.request
            .uri()
            .authority()
            .map_or_else(|| self.host.clone(), |a| a.to_string())
    }
}

impl Inner {
    /// Every check and injection of one request, nothing sent.
    async fn prepare<B>(&self, req: Request<B>) -> Result<Prepared<B>>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.method() == Method::CONNECT {
            return Err(TokenizerError::Method(
                "CONNECT is refused: tunneled traffic cannot be checked or injected; send plain-HTTP absolute-form requests (GET http://host/path) and the tokenizer speaks TLS to the upstream".into(),
            ));
        }
        let target = Target::of(req.uri())?;
        if let Some(host) = req.headers().get(HOST) {
            if !target.same_as_host_header(host) {
                return Err(TokenizerError::bad(format!(
                    "the Host header disagrees with the request target {}: the tokenizer dials the target, so they must name the same host",
                    target.authority
                )));
            }
        }
        let tokens = proxy_tokens(
            req.headers()
                .get_all(http::header::PROXY_AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes()),
        );
        let values: Vec<&HeaderValue> = req.headers().get_all(PROXY_TOKENIZER).iter().collect();
        if values.is_empty() {
            return Err(TokenizerError::bad(
                "no Proxy-Tokenizer header: send `Proxy-Tokenizer: <sealed secret>` (seal with `roost tokenizer seal`)",
            ));
        }
        if values.len() > MAX_SECRETS_PER_REQUEST {
            return Err(TokenizerError::bad(format!(
                "at most {MAX_SECRETS_PER_REQUEST} Proxy-Tokenizer headers per request"
            )));
        }
        let mut injections = Vec::with_capacity(values.len());
        for value in values {
            let value = value
                .to_str()
                .map_err(|_| TokenizerError::bad("Proxy-Tokenizer header is not ASCII"))?;
            let header = ProxyTokenizerHeader::parse(value)?;
            let secret = self.open(header.sealed)?;
            secret.authorize(&tokens)?;
            secret.check_host(&target.authority)?;
            injections.push(inject::prepare(&secret, &header.params)?);
        }
        let (plain, port, upstream) = self.upstream(&target);
        let (mut parts, body) = req.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        strip_hop_by_hop(&mut parts.headers);
        let host_value = HeaderValue::from_str(&upstream).map_err(|_| {
            TokenizerError::bad("the request target's host is not a valid Host header")
        })?;
        parts.headers.insert(HOST, host_value);
        let (body, signed) = if injections.iter().any(Injection::needs_body) {
            let bytes = Limited::new(body, MAX_SIGNED_BODY)
                .collect()
                .await
                .map_err(|e| {
                    TokenizerError::bad(format!(
                        "cannot read the request body to sign it (at most {MAX_SIGNED_BODY} bytes): {e}"
                    ))
                })?
                .to_bytes();
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            (Either::Right(Full::new(bytes.clone())), Some(bytes))
        } else {
            (Either::Left(body), None)
        };
        for injection in &injections {
            let signed = signed.as_deref().unwrap_or_default();
            apply(
                injection,
                &parts.method,
                &path_and_query,
                &mut parts.headers,
                signed,
            )?;
        }
        let scheme = if plain { "http" } else { "https" };
        parts.uri = format!("{scheme}://{upstream}{path_and_query}")
            .parse::<Uri>()
            .map_err(|e| TokenizerError::bad(format!("bad request target: {e}")))?;
        Ok(Prepared {
            request: Request::from_parts(parts, body),
            tls: !plain,
            host: target.host,
            port,
        })
    }

    /// Opens a sealed secret, or takes it from the cache.
    fn open(&self, sealed: &str) -> Result<Arc<Secret>> {
        let id: [u8; 32] = Sha256::digest(sealed.as_bytes()).into();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        if let Some(secret) = cached {
            return Ok(secret);
        }
        let plaintext = self.key.open(sealed)?;
        let secret = Arc::new(Secret::from_json(&plaintext)?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= SECRET_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(id, secret.clone());
        Ok(secret)
    }

    /// Whether the target is a plain-HTTP test upstream, the port to dial
    /// and the authority to name: a target without a port or with port 80
    /// goes to TLS on 443.
    fn upstream(&self, target: &Target) -> (bool, u16, String) {
        let explicit = format!("{}:{}", target.host, target.port.unwrap_or(80));
        if self.plain_http.contains(&explicit) {
            return (true, target.port.unwrap_or(80), explicit);
        }
        match target.port {
            None | Some(80) => (false, 443, target.host.clone()),
            Some(port) => (false, port, format!("{}:{port}", target.host)),
        }
    }
}

fn apply(
    injection: &Injection,
    method: &Method,
    path_and_query: &str,
    headers: &mut http::HeaderMap,
    body: &[u8],
) -> Result<()> {
    match injection {
        Injection::Header(name, value) => {
            headers.insert(name.clone(), value.clone());
        }
        Injection::BodyHmac { key, fmt, dst } => {
            headers.insert(dst.clone(), inject::body_hmac(key, fmt, body)?);
        }
        Injection::Sigv4 {
            access_key,
            secret_key,
        } => crate::sigv4::resign(
            method,
            path_and_query,
            headers,
            body,
            access_key,
            secret_key,
        )?,
    }
    Ok(())
}

/// The host and port a request names in its absolute-form target.
struct Target {
    /// Lowercase `host` or `host:port`, as written: what secrets' host
    /// rules are checked against.
    authority: String,
    host: String,
    port: Option<u16>,
}

impl Target {
    fn of(uri: &Uri) -> Result<Target> {
        let absolute = TokenizerError::bad(
            "the tokenizer is a forward proxy: send absolute-form plain-HTTP requests (GET http://host/path); it speaks TLS to the upstream itself",
        );
        if uri.scheme_str() != Some("http") {
            return Err(absolute);
        }
        let authority = uri.authority().ok_or(absolute)?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(TokenizerError::bad(
                "the request target must be http://host[:port]/path, without user info",
            ));
        }
        Ok(Target {
            authority: authority.as_str().to_ascii_lowercase(),
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16(),
        })
    }

    fn same_as_host_header(&self, value: &HeaderValue) -> bool {
        host_header_names(value, &self.host, self.port)
    }
}

/// Whether a `Host` header names `host` at `port` (80 when absent on
/// either side): what a forward proxy checks before dialing the request
/// target, so that the host an upstream serves is the host that was
/// checked.
pub fn host_header_names(value: &HeaderValue, host: &str, port: Option<u16>) -> bool {
    let Some(header) = value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<http::uri::Authority>().ok())
    else {
        return false;
    };
    header.host().eq_ignore_ascii_case(host)
        && header.port_u16().unwrap_or(80) == port.unwrap_or(80)
}

/// Removes hop-by-hop headers, including those the `Connection` header
/// names, and both proxy headers (`Proxy-Authorization`,
/// `Proxy-Tokenizer`): what no forward proxy passes on.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// An error with its causes (hyper keeps the useful part in the chain).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
