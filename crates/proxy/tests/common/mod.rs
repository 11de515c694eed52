//! Test harness: "machines" that are real HTTP servers (and UDP echo
//! servers on the same port number) on loopback, an
//! in-memory orchestrator implementing [`Backends`] over them, and a small
//! HTTP client. Starting a fake machine binds its server (after an optional
//! delay, like a program that takes time to listen); stopping it aborts the
//! server and every connection it holds, as stopping a container does.

#![allow(dead_code)] // each test binary uses a part of the harness

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use roost_lifecycle::MachineRecord;
use roost_proxy::{
    BackendError, Backends, BoxFuture, Proxy, ProxyConfig, ProxyError, TlsCertificate,
};
use roost_types::{CheckStatus, MachineConfig, MachineService, MachineState};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one fake machine's server does and has seen.
pub struct Server {
    pub id: String,
    pub healthy: AtomicBool,
    pub requests: AtomicUsize,
    /// Headers of the last request, for assertions.
    pub last_headers: Mutex<Option<http::HeaderMap>>,
    /// Datagrams the UDP echo received.
    pub datagrams: AtomicUsize,
    sessions: AtomicUsize,
}

struct FakeMachine {
    machine: MachineRecord,
    port: u16,
    server: Arc<Server>,
    task: Option<tokio::task::JoinHandle<()>>,
    bind_delay: Duration,
}

/// The in-memory orchestrator.
#[derive(Default)]
pub struct Fake {
    apps: Mutex<BTreeMap<String, Vec<FakeMachine>>>,
    changes: tokio::sync::watch::Sender<u64>,
    /// Reads of the change counter: every supervisor round makes some.
    pub change_reads: AtomicUsize,
    pub starts: AtomicUsize,
    pub stops: AtomicUsize,
    pub reported: Mutex<HashMap<String, Vec<CheckStatus>>>,
}

pub fn service(json: serde_json::Value) -> MachineService {
    serde_json::from_value(json).expect("service json")
}

/// An HTTP service on ports 80/443 (Fly's `http_service` shape) with the
/// given extra fields (concurrency, autostop, checks, ...).
pub fn http_service(extra: serde_json::Value) -> MachineService {
    let mut json = serde_json::json!({
        "protocol": "tcp",
        "internal_port": 0,
        "ports": [{"port": 80, "handlers": ["http"]}, {"port": 443, "handlers": ["tls", "http"]}],
    });
    if let (Some(base), Some(extra)) = (json.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    service(json)
}

impl Fake {
    pub fn new() -> Arc<Fake> {
        Arc::new(Fake::default())
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Adds a machine to `app` (created on first use) with `services`
    /// (their `internal_port` set to the machine's server port), started
    /// or stopped.
    pub async fn add(
        self: &Arc<Self>,
        app: &str,
        id: &str,
        mut services: Vec<MachineService>,
        started: bool,
    ) -> Arc<Server> {
        let port = free_port();
        for service in &mut services {
            service.internal_port = Some(i64::from(port));
            for check in &mut service.checks {
                check.port = None;
            }
        }
        let server = Arc::new(Server {
            id: id.to_string(),
            healthy: AtomicBool::new(true),
            requests: AtomicUsize::new(0),
            last_headers: Mutex::new(None),
            datagrams: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
        });
        let machine = MachineRecord {
            app: app.to_string(),
            id: id.to_string(),
            name: id.to_string(),
            state: MachineState::Stopped,
            region: "local".into(),
            instance_id: "1".into(),
            private_ip: "127.0.0.1".into(),
            config: MachineConfig {
                image: "test".into(),
                services,
                ..Default::default()
            },
            image_ref: Default::default(),
            created_at: String::new(),
            updated_at: String::new(),
            cordoned: false,
            runtime: "crun".into(),
            init_pid: None,
            restart_count: 0,
        };
        self.apps
            .lock()
            .unwrap()
            .entry(app.to_string())
            .or_default()
            .push(FakeMachine {
                machine,
                port,
                server: server.clone(),
                task: None,
                bind_delay: Duration::ZERO,
            });
        if started {
            self.start_now(app, id).await;
        }
        self.bump();
        server
    }

    pub fn set_bind_delay(&self, app: &str, id: &str, delay: Duration) {
        self.with(app, id, |m| m.bind_delay = delay);
    }

    pub fn set_cordoned(&self, app: &str, id: &str, cordoned: bool) {
        self.with(app, id, |m| m.machine.cordoned = cordoned);
        self.bump();
    }

    pub fn state(&self, app: &str, id: &str) -> MachineState {
        let mut state = MachineState::Destroyed;
        self.with(app, id, |m| state = m.machine.state);
        state
    }

    fn with(&self, app: &str, id: &str, f: impl FnOnce(&mut FakeMachine)) {
        let mut apps = self.apps.lock().unwrap();
        let machine = apps
            .get_mut(app)
            .and_then(|ms| ms.iter_mut().find(|m| m.machine.id == id))
            .expect("machine exists");
        f(machine);
    }

    /// Marks the machine started and binds its server (after its delay).
    async fn start_now(&self, app: &str, id: &str) {
        let (port, server, delay) = {
            let mut apps = self.apps.lock().unwrap();
            let m = apps
                .get_mut(app)
                .and_then(|ms| ms.iter_mut().find(|m| m.machine.id == id))
                .expect("machine exists");
            if m.machine.state == MachineState::Started {
                return;
            }
            m.machine.state = MachineState::Started;
            (m.port, m.server.clone(), m.bind_delay)
        };
        // Without a delay the port accepts before start returns.
        let bound = if delay.is_zero() {
            Some((bind(port).await, bind_udp(port).await))
        } else {
            None
        };
        let task = tokio::spawn(async move {
            let (listener, udp) = match bound {
                Some(bound) => bound,
                None => {
                    tokio::time::sleep(delay).await;
                    (bind(port).await, bind_udp(port).await)
                }
            };
            tokio::join!(serve(listener, server.clone()), echo(udp, server));
        });
        self.with(app, id, |m| m.task = Some(task));
        self.bump();
    }
}

impl Backends for Fake {
    fn change_count(&self) -> u64 {
        self.change_reads.fetch_add(1, Ordering::SeqCst);
        *self.changes.borrow()
    }

    fn changed(&self, seen: u64) -> BoxFuture<'static, ()> {
        let mut changes = self.changes.subscribe();
        Box::pin(async move {
            let _ = changes.wait_for(|n| *n != seen).await;
        })
    }

    fn apps(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        Box::pin(async move { Ok(self.apps.lock().unwrap().keys().cloned().collect()) })
    }

    fn machines<'a>(
        &'a self,
        app: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MachineRecord>, BackendError>> {
        Box::pin(async move {
            let apps = self.apps.lock().unwrap();
            let machines = apps
                .get(app)
                .ok_or_else(|| BackendError::NotFound(format!("no app {app}")))?;
            Ok(machines.iter().map(|m| m.machine.clone()).collect())
        })
    }

    fn start<'a>(&'a self, app: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.starts.fetch_add(1, Ordering::SeqCst);
            // Like crun: the container is up quickly; the program binds later.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.start_now(app, id).await;
            Ok(())
        })
    }

    fn stop<'a>(&'a self, app: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.stops.fetch_add(1, Ordering::SeqCst);
            let task = {
                let mut apps = self.apps.lock().unwrap();
                let m = apps
                    .get_mut(app)
                    .and_then(|ms| ms.iter_mut().find(|m| m.machine.id == id))
                    .ok_or_else(|| BackendError::NotFound(id.to_string()))?;
                m.machine.state = MachineState::Stopped;
                m.task.take()
            };
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
            self.bump();
            Ok(())
        })
    }

    fn report_checks(&self, _app: &str, id: &str, checks: Vec<CheckStatus>) {
        self.reported.lock().unwrap().insert(id.to_string(), checks);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A machine's program: an HTTP/1.1 + h2c server whose connections live in
/// a `JoinSet`, so aborting `serve` drops them all.
async fn bind(port: u16) -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind machine port")
}

async fn bind_udp(port: u16) -> tokio::net::UdpSocket {
    tokio::net::UdpSocket::bind(("127.0.0.1", port))
        .await
        .expect("bind machine UDP port")
}

/// A machine's UDP program: answers each datagram with `<id>:` and the
/// datagram, to its sender.
async fn echo(socket: tokio::net::UdpSocket, server: Arc<Server>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        server.datagrams.fetch_add(1, Ordering::SeqCst);
        let mut reply = format!("{}:", server.id).into_bytes();
        reply.extend_from_slice(&buf[..n]);
        let _ = socket.send_to(&reply, peer).await;
    }
}

async fn serve(listener: tokio::net::TcpListener, server: Arc<Server>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let server = server.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| respond(server.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn text(status: u16, body: impl Into<Bytes>) -> http::Response<TestBody> {
    let mut response = http::Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    response
}

fn query(req: &http::Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3B", ";")
                .replace("%3D", "=")
                .replace("%20", " ")
        })
    })
}

/// Routes of a machine's program:
/// - `/` and anything else: `machine=<id>` plus the request body.
/// - `/slow?ms=N`: answers after N ms.
/// - `/sse?n=N&ms=M`: N events, one every M ms, as `text/event-stream`.
/// - `/silent?ms=M`: one event, then nothing for M ms, then ends.
/// - `/replay?v=VALUE`: answers with `fly-replay: VALUE`; a replayed request
///   (with `fly-replay-src`) gets `machine=<id> src=<src> body=<body>`.
/// - `/session`: hands out a new `mcp-session-id`.
/// - `/health`: 200 when healthy, 500 otherwise.
/// - `/ws`: WebSocket echo.
async fn respond(
    server: Arc<Server>,
    mut req: http::Request<Incoming>,
) -> Result<http::Response<TestBody>, Infallible> {
    if req.uri().path() != "/health" {
        server.requests.fetch_add(1, Ordering::SeqCst);
        *server.last_headers.lock().unwrap() = Some(req.headers().clone());
    }
    let id = server.id.clone();
    match req.uri().path() {
        "/health" => Ok(if server.healthy.load(Ordering::SeqCst) {
            text(200, "ok")
        } else {
            text(500, "sick")
        }),
        "/slow" => {
            let ms: u64 = query(&req, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(500);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(text(200, format!("machine={id}")))
        }
        "/sse" | "/silent" => {
            let silent = req.uri().path() == "/silent";
            let n: usize = query(&req, "n").and_then(|v| v.parse().ok()).unwrap_or(5);
            let ms: u64 = query(&req, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                let n = if silent { 1 } else { n };
                for i in 0..n {
                    let event = format!("id: {i}\ndata: {id} {i}\n\n");
                    if tx.send(Bytes::from(event)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|chunk| (Ok::<_, Infallible>(hyper::body::Frame::data(chunk)), rx))
            });
            let mut response = http::Response::new(http_body_util::StreamBody::new(stream).boxed());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            Ok(response)
        }
        "/replay" if req.headers().contains_key("fly-replay-src") => {
            let src = req.headers()["fly-replay-src"]
                .to_str()
                .unwrap_or_default()
                .to_string();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(text(
                200,
                format!(
                    "machine={id} src={src} body={}",
                    String::from_utf8_lossy(&body)
                ),
            ))
        }
        "/replay" => {
            let value = query(&req, "v").unwrap_or_default();
            let mut response = text(200, format!("replay requested by {id}"));
            response
                .headers_mut()
                .insert("fly-replay", value.parse().unwrap());
            Ok(response)
        }
        "/session" => {
            let n = server.sessions.fetch_add(1, Ordering::SeqCst);
            let mut response = text(200, format!("machine={id}"));
            response
                .headers_mut()
                .insert("mcp-session-id", format!("{id}-s{n}").parse().unwrap());
            Ok(response)
        }
        "/ws" => {
            let key = req
                .headers()
                .get("sec-websocket-key")
                .cloned()
                .unwrap_or_else(|| http::HeaderValue::from_static(""));
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                use futures_util::{SinkExt, StreamExt};
                let (mut tx, mut rx) = ws.split();
                while let Some(Ok(message)) = rx.next().await {
                    if message.is_close() {
                        break;
                    }
                    if tx.send(message).await.is_err() {
                        break;
                    }
                }
            });
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut response = text(101, "");
            let headers = response.headers_mut();
            headers.insert(http::header::CONNECTION, "upgrade".parse().unwrap());
            headers.insert(http::header::UPGRADE, "websocket".parse().unwrap());
            headers.insert("sec-websocket-accept", accept.parse().unwrap());
            Ok(response)
        }
        _ => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut out = format!("machine={id}").into_bytes();
            if !body.is_empty() {
                out.extend_from_slice(b" body=");
                out.extend_from_slice(&body);
            }
            Ok(text(200, out))
        }
    }
}

/// A proxy on a free loopback port, with its supervisor.
pub struct Running {
    pub proxy: Proxy,
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Test defaults: short ticks and timeouts so tests stay fast.
pub fn test_config() -> ProxyConfig {
    ProxyConfig {
        tick: Duration::from_millis(50),
        queue_timeout: Duration::from_secs(2),
        start_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

pub async fn start_proxy(fake: &Arc<Fake>, config: ProxyConfig) -> Running {
    let proxy = Proxy::new(fake.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = proxy.clone();
    let serve = tokio::spawn(async move {
        serving
            .serve(listener, std::future::pending())
            .await
            .expect("serve");
    });
    let supervisor = proxy.spawn_supervisor();
    Running {
        proxy,
        addr,
        tasks: vec![serve, supervisor],
    }
}

/// A response read whole.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

pub fn request(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::builder()
        .method(if body.is_empty() { "GET" } else { "POST" })
        .uri(format!("http://{addr}{path}"))
        .header(http::header::HOST, host);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Reply {
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("response within 20s")
        .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(20), response.into_body().collect())
        .await
        .expect("body within 20s")
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(&client(), request(addr, host, path, headers, "")).await
}

/// Sends an HTTP/1.0 GET over `stream` (raw TCP services carry it to the
/// machine's HTTP server unchanged) and reads until the far end closes,
/// for at most 10 s.
pub async fn http10_exchange(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: anything\r\n\r\n")
        .await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
        .await
        .expect("the far end closes within 10s")?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Polls `check` every 20 ms until it holds or `secs` pass.
pub async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A listener the test spawned, stopped when dropped.
pub struct Serving {
    pub addr: SocketAddr,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds a free loopback port and serves it with `serve`.
pub async fn serving<F>(serve: impl FnOnce(tokio::net::TcpListener) -> F) -> Serving
where
    F: Future<Output = Result<(), ProxyError>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = serve(listener);
    let task = tokio::spawn(async move { serve.await.expect("serve") });
    Serving { addr, task }
}

pub async fn https(proxy: &Proxy, certificate: &TlsCertificate) -> Serving {
    let (proxy, certificate) = (proxy.clone(), certificate.clone());
    serving(|listener| async move {
        proxy
            .serve_tls(listener, &certificate, std::future::pending())
            .await
    })
    .await
}

pub async fn tcp(
    proxy: &Proxy,
    app: &str,
    port: u16,
    certificate: Option<&TlsCertificate>,
) -> Serving {
    let (proxy, app, certificate) = (proxy.clone(), app.to_string(), certificate.cloned());
    serving(|listener| async move {
        proxy
            .serve_tcp(
                listener,
                &app,
                port,
                certificate.as_ref(),
                std::future::pending(),
            )
            .await
    })
    .await
}
