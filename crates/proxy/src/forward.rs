//! One client request: find the app, pick the machine, forward, follow
//! `fly-replay`, pass the response (or upgraded connection) back.

use crate::affinity::Pin;
use crate::body::ProxyBody;
use crate::replay::Replay;
use crate::route::{InstanceMode, Listen, Picked, RouteError, Target};
use crate::Shared;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Request bodies up to this size are kept so a `fly-replay` can resend
/// them (Fly's limit). Larger ones, and bodies of unknown length, stream
/// straight through and cannot be replayed.
pub const MAX_REPLAY_BODY: u64 = 1024 * 1024;
/// `fly-replay` hops one request may take.
const MAX_REPLAYS: usize = 3;

pub(crate) type UpstreamBody = Either<Full<Bytes>, Incoming>;

/// Headers that describe one hop and are never forwarded.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub(crate) static FLY_CLIENT_IP: HeaderName = HeaderName::from_static("fly-client-ip");
static FLY_REQUEST_ID: HeaderName = HeaderName::from_static("fly-request-id");
static FLY_REGION: HeaderName = HeaderName::from_static("fly-region");
static FLY_FORWARDED_PORT: HeaderName = HeaderName::from_static("fly-forwarded-port");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_SSL: HeaderName = HeaderName::from_static("x-forwarded-ssl");
static FLY_REPLAY: HeaderName = HeaderName::from_static("fly-replay");
static FLY_REPLAY_SRC: HeaderName = HeaderName::from_static("fly-replay-src");
static FLY_FORCE_INSTANCE_ID: HeaderName = HeaderName::from_static("fly-force-instance-id");
static FLY_PREFER_INSTANCE_ID: HeaderName = HeaderName::from_static("fly-prefer-instance-id");

/// The client connection a request arrived on.
pub(crate) struct ConnInfo {
    pub listen: Listen,
    pub clients: Arc<Clients>,
    /// Header values that are the same for every request of the
    /// connection, made once.
    client_ip: HeaderValue,
    port: HeaderValue,
}

impl ConnInfo {
    pub(crate) fn new(
        peer: SocketAddr,
        local_port: u16,
        listen: Listen,
        clients: Arc<Clients>,
    ) -> ConnInfo {
        let value = |text: String| {
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        ConnInfo {
            listen,
            clients,
            client_ip: value(peer.ip().to_canonical().to_string()),
            port: value(local_port.to_string()),
        }
    }
}

/// Pools of keep-alive connections to machines, one set per serving
/// runtime so a pooled connection's task runs where its requests do.
pub(crate) struct Clients {
    pool: Arc<crate::pool::Pool>,
    h2: Client<HttpConnector, UpstreamBody>,
}

impl Clients {
    pub(crate) fn new(config: &crate::ProxyConfig) -> Clients {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        Clients {
            pool: Arc::default(),
            h2: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .http2_only(true)
                .build(connector),
        }
    }
}

/// A request the proxy answers itself, with a message saying why.
pub(crate) struct Reject {
    status: StatusCode,
    message: String,
}

impl Reject {
    fn new(status: StatusCode, message: impl Into<String>) -> Reject {
        Reject {
            status,
            message: message.into(),
        }
    }
}

impl From<RouteError> for Reject {
    fn from(err: RouteError) -> Reject {
        let status = match err {
            RouteError::UnknownApp(_) => StatusCode::NOT_FOUND,
            RouteError::Unavailable(_) | RouteError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            RouteError::Backend(_) => StatusCode::BAD_GATEWAY,
        };
        Reject::new(status, err.to_string())
    }
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let request_id = HeaderValue::from_str(&shared.request_id())
        .unwrap_or_else(|_| HeaderValue::from_static("invalid-region"));
    let mut response = match forward(&shared, &conn, req, &request_id).await {
        Ok(response) => response,
        Err(reject) => {
            tracing::debug!(status = reject.status.as_u16(), message = %reject.message, "proxy answered itself");
            let mut response = Response::new(ProxyBody::full(format!(
                "roost proxy: {}\n",
                reject.message
            )));
            *response.status_mut() = reject.status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            if reject.status == StatusCode::SERVICE_UNAVAILABLE {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
    };
    response
        .headers_mut()
        .insert(FLY_REQUEST_ID.clone(), request_id);
    Ok(response)
}

/// The app named by the request's host: `<app>.<domain>[:port]`.
fn app_of(req: &Request<Incoming>, domain: &str) -> Result<String, Reject> {
    // Host first: HTTP/1.1 always has it, and an HTTP/2 client that sends
    // it means it; otherwise HTTP/2's :authority (or an absolute URI).
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<http::uri::Authority>().ok())
        .map(|authority| authority.host().to_string())
        .or_else(|| req.uri().host().map(str::to_string))
        .ok_or_else(|| {
            Reject::new(
                StatusCode::BAD_REQUEST,
                format!("the request has no Host; send Host: <app>.{domain}"),
            )
        })?;
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let app = host
        .strip_suffix(domain)
        .and_then(|rest| rest.strip_suffix('.'))
        .filter(|app| !app.is_empty() && !app.contains('.'));
    match app {
        Some(app) => Ok(app.to_string()),
        None => Err(Reject::new(
            StatusCode::NOT_FOUND,
            format!("no app at host {host:?}: this proxy serves <app>.{domain}"),
        )),
    }
}

/// The `Upgrade` value when the request asks to switch protocols (HTTP/1.1).
fn upgrade_of<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten()
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// The headers every forwarded request carries (see the crate docs).
fn upstream_headers(
    mut headers: HeaderMap,
    uri: &Uri,
    conn: &ConnInfo,
    request_id: &HeaderValue,
    region: &HeaderValue,
    upgrade: Option<&HeaderValue>,
) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    if !headers.contains_key(header::HOST) {
        if let Some(value) = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, value);
        }
    }
    let forwarded_for = match headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .and_then(|previous| {
            let client = conn.client_ip.to_str().ok()?;
            HeaderValue::from_str(&format!("{previous}, {client}")).ok()
        }) {
        Some(appended) => appended,
        None => conn.client_ip.clone(),
    };
    headers.insert(FLY_CLIENT_IP.clone(), conn.client_ip.clone());
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    if conn.listen.is_tls() {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
        headers.insert(X_FORWARDED_SSL.clone(), HeaderValue::from_static("on"));
    } else {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        // A client must not be able to claim TLS it did not use.
        headers.remove(&X_FORWARDED_SSL);
    }
    headers.insert(X_FORWARDED_PORT.clone(), conn.port.clone());
    headers.insert(FLY_FORWARDED_PORT.clone(), conn.port.clone());
    headers.insert(FLY_REQUEST_ID.clone(), request_id.clone());
    headers.insert(FLY_REGION.clone(), region.clone());
    headers
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

async fn forward(
    shared: &Shared,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    request_id: &HeaderValue,
) -> Result<Response<ProxyBody>, Reject> {
    let config = &shared.config;
    let host_app = app_of(&req, &config.domain)?;
    let upgrade = upgrade_of(&req);
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();

    // Keep the body when it may have to be replayed.
    let mut streamed: Option<Incoming> = None;
    let kept: Option<Bytes> = if upgrade.is_some() || body.is_end_stream() {
        Some(Bytes::new())
    } else if body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_REPLAY_BODY)
    {
        let collected = Limited::new(body, MAX_REPLAY_BODY as usize)
            .collect()
            .await
            .map_err(|err| {
                Reject::new(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {err}"),
                )
            })?;
        Some(collected.to_bytes())
    } else {
        streamed = Some(body);
        None
    };

    let session = shared.affinity.key_of(&parts.headers);
    let mut app = host_app.clone();
    let mut target = if let Some(id) = header_str(&parts.headers, &FLY_FORCE_INSTANCE_ID) {
        Target::Instance {
            id: id.to_string(),
            mode: InstanceMode::Force,
        }
    } else if let Some(id) = header_str(&parts.headers, &FLY_PREFER_INSTANCE_ID) {
        Target::Instance {
            id: id.to_string(),
            mode: InstanceMode::Prefer,
        }
    } else if let Some(pin) = session
        .as_ref()
        .and_then(|key| shared.affinity.lookup(&host_app, key))
    {
        app = pin.app;
        Target::Instance {
            id: pin.machine,
            mode: InstanceMode::Sticky,
        }
    } else {
        Target::Any { exclude: None }
    };
    let base_headers = upstream_headers(
        parts.headers,
        &parts.uri,
        conn,
        request_id,
        &shared.region_header,
        upgrade.as_ref(),
    );
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let mut replay_src: Option<HeaderValue> = None;

    for hop in 0..=MAX_REPLAYS {
        let picked = match shared.router.route(&app, &conn.listen, &target).await {
            Ok(picked) => picked,
            Err(RouteError::UnknownApp(_))
                if matches!(
                    target,
                    Target::Instance {
                        mode: InstanceMode::Sticky,
                        ..
                    }
                ) =>
            {
                // The pinned app is gone: forget the pin, route afresh.
                if let Some(key) = &session {
                    shared.affinity.forget(&host_app, key);
                }
                app = host_app.clone();
                target = Target::Any { exclude: None };
                shared.router.route(&app, &conn.listen, &target).await?
            }
            Err(RouteError::UnknownApp(msg)) if hop > 0 => {
                return Err(Reject::new(
                    StatusCode::BAD_GATEWAY,
                    format!("fly-replay named an app that does not exist: {msg}"),
                ))
            }
            Err(err) => return Err(err.into()),
        };
        let id = picked.backend.id().to_string();
        let upstream = picked.upstream().ok_or_else(|| {
            Reject::new(
                StatusCode::BAD_GATEWAY,
                format!("machine {id} of app {app} has no private IP address (is roost running without its private network?)"),
            )
        })?;
        let idle = picked.idle_timeout(config.idle_timeout);
        let h2 = picked
            .entry()
            .http_options
            .as_ref()
            .and_then(|o| o.h2_backend)
            .unwrap_or(false);
        let mut streamed_once = streamed.take();
        let build = |version: Version, uri: Uri| -> Option<Request<UpstreamBody>> {
            let body = match &kept {
                Some(bytes) => Either::Left(Full::new(bytes.clone())),
                None => Either::Right(streamed_once.take()?),
            };
            let mut request = Request::new(body);
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri;
            *request.version_mut() = version;
            // HTTP/2 too keeps `Host`: its :authority names the machine's
            // address, and the program wants the name the client used.
            *request.headers_mut() = base_headers.clone();
            if let Some(src) = &replay_src {
                request
                    .headers_mut()
                    .insert(FLY_REPLAY_SRC.clone(), src.clone());
            }
            Some(request)
        };
        let sent = if h2 {
            let uri: Uri = format!("http://{upstream}{path}").parse().map_err(|err| {
                Reject::new(
                    StatusCode::BAD_REQUEST,
                    format!("bad request target: {err}"),
                )
            })?;
            let mut build = build;
            let request = build(Version::HTTP_2, uri).ok_or_else(|| {
                Reject::new(
                    StatusCode::BAD_GATEWAY,
                    "a streamed request body cannot be sent twice",
                )
            })?;
            tokio::time::timeout(idle, conn.clients.h2.request(request))
                .await
                .map(|sent| {
                    sent.map(|response| (response, None))
                        .map_err(|e| error_chain(&e))
                })
        } else {
            // Origin-form target: the connection already names the machine.
            let origin = Uri::from(path.clone());
            let mut build = build;
            let sending =
                conn.clients
                    .pool
                    .send(upstream, config.connect_timeout, kept.is_some(), || {
                        build(Version::HTTP_11, origin.clone())
                    });
            tokio::time::timeout(idle, sending).await.map(|sent| {
                sent.map(|(response, lease)| (response, Some(lease)))
                    .map_err(|e| error_chain(&e))
            })
        };
        let (mut response, lease) = match sent {
            Ok(Ok(sent)) => sent,
            Ok(Err(err)) => {
                return Err(Reject::new(
                    StatusCode::BAD_GATEWAY,
                    format!("machine {id} of app {app} at {upstream} failed: {err}"),
                ))
            }
            Err(_) => {
                return Err(Reject::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("machine {id} of app {app} sent no response within {idle:?} (the service's idle timeout)"),
                ))
            }
        };

        if let Some(value) = response.headers().get(&FLY_REPLAY) {
            let text = value.to_str().unwrap_or_default().to_string();
            if kept.is_none() {
                return Err(Reject::new(
                    StatusCode::BAD_GATEWAY,
                    format!("machine {id} asked for fly-replay ({text}), but the request body was streamed (over {MAX_REPLAY_BODY} bytes or of unknown length) and cannot be replayed"),
                ));
            }
            if hop == MAX_REPLAYS {
                return Err(Reject::new(
                    StatusCode::BAD_GATEWAY,
                    format!("machine {id} asked for fly-replay ({text}) after {MAX_REPLAYS} replays already; giving up"),
                ));
            }
            let replay = Replay::parse(&text).map_err(|err| {
                Reject::new(
                    StatusCode::BAD_GATEWAY,
                    format!("machine {id} sent an invalid fly-replay header {text:?}: {err}"),
                )
            })?;
            tracing::debug!(app, machine = %id, replay = %text, "fly-replay");
            replay_src = HeaderValue::from_str(&replay.source_header(&id, &config.region)).ok();
            if let Some(next) = &replay.app {
                app = next.clone();
            }
            target = replay.target(&id);
            continue;
        }

        shared.affinity.learn(
            &host_app,
            session.as_ref(),
            response.headers(),
            &Pin {
                app: app.clone(),
                machine: id.clone(),
            },
        );

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(Reject::new(
                    StatusCode::BAD_GATEWAY,
                    format!("machine {id} switched protocols without being asked"),
                ));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let (head, _) = response.into_parts();
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, picked, idle));
            return Ok(Response::from_parts(head, ProxyBody::empty()));
        }
        let (mut head, body) = response.into_parts();
        strip_hop_by_hop(&mut head.headers);
        return Ok(Response::from_parts(
            head,
            ProxyBody::upstream(body, picked.guard, lease, idle),
        ));
    }
    Err(Reject::new(
        StatusCode::BAD_GATEWAY,
        "too many fly-replay hops",
    ))
}

/// Joins the client's and the machine's upgraded connections.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    picked: Picked,
    idle: Duration,
) {
    let id = picked.backend.id().to_string();
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let client = hyper_util::rt::TokioIo::new(client);
            let upstream = hyper_util::rt::TokioIo::new(upstream);
            match crate::tunnel::splice(client, upstream, idle).await {
                Ok((up, down)) => {
                    tracing::debug!(machine = %id, up, down, "upgraded connection closed")
                }
                Err(err) => {
                    tracing::debug!(machine = %id, error = %err, "upgraded connection ended")
                }
            }
        }
        Err(err) => tracing::debug!(machine = %id, error = %err, "upgrade failed"),
    }
    drop(picked);
}

/// An error with its causes, which hyper keeps in the source chain.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    fn forwarded(tls: bool, port: u16) -> HeaderMap {
        let conn = ConnInfo::new(
            "[::ffff:127.0.0.9]:5555".parse().unwrap(),
            port,
            Listen::Http {
                ports: Arc::from([80u16]),
                tls,
            },
            Arc::new(Clients::new(&crate::ProxyConfig::default())),
        );
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_FOR, "203.0.113.7".parse().unwrap());
        headers.insert(&X_FORWARDED_SSL, "on".parse().unwrap());
        let uri: Uri = "http://a.localhost:8080/x".parse().unwrap();
        let (rid, region) = (
            HeaderValue::from_static("rid"),
            HeaderValue::from_static("local"),
        );
        upstream_headers(headers, &uri, &conn, &rid, &region, None)
    }

    #[test]
    fn forwarded_headers() {
        let out = forwarded(false, 8080);
        assert_eq!(out[&FLY_CLIENT_IP], "127.0.0.9");
        assert_eq!(out[&X_FORWARDED_FOR], "203.0.113.7, 127.0.0.9");
        assert_eq!(out[&X_FORWARDED_PROTO], "http");
        assert!(!out.contains_key(&X_FORWARDED_SSL));
        assert_eq!(out[&X_FORWARDED_PORT], "8080");
        assert_eq!(out[&FLY_REQUEST_ID], "rid");
        assert_eq!(out[header::HOST], "a.localhost:8080");

        let out = forwarded(true, 8443);
        assert_eq!(out[&X_FORWARDED_PROTO], "https");
        assert_eq!(out[&X_FORWARDED_SSL], "on");
        assert_eq!(out[&X_FORWARDED_PORT], "8443");
    }
}
