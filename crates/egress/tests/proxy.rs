//! The egress proxy end to end on loopback: real HTTP and HTTPS upstreams
//! reached through the operator's exceptions, clients told apart by their
//! loopback source address (127.0.0.1 is a machine of app `a`, 127.0.0.2
//! one of app `b`, 127.0.0.3 no machine), policies changed while clients
//! are connected, and every refusal the proxy must give.

use roost_destination_guard::{Guard, GuardConfig, Prefix, Site};
use roost_egress::{Directory, EgressConfig, EgressProxy, Ledger, MachineRef, Policy};
use roost_testkit::upstream::{self, Upstream};
use roost_types::{EgressDefault, EgressPolicy};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const A: &str = "127.0.0.1";
const B: &str = "127.0.0.2";
const NOBODY: &str = "127.0.0.3";

/// Machines by address and policies by app, changeable while the proxy runs.
#[derive(Default)]
struct Table {
    policies: Mutex<HashMap<String, Arc<Policy>>>,
}

impl Table {
    fn set(&self, app: &str, default: EgressDefault, allow: &[&str], deny: &[&str]) {
        let policy = Policy::compile(&EgressPolicy {
            default,
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap();
        self.policies
            .lock()
            .unwrap()
            .insert(app.to_string(), Arc::new(policy));
    }
}

impl Directory for Table {
    fn machine_at(&self, peer: IpAddr) -> Option<MachineRef> {
        let (app, id) = match peer.to_string().as_str() {
            A => ("a", "machine-a"),
            B => ("b", "machine-b"),
            _ => return None,
        };
        Some(MachineRef {
            app: app.into(),
            id: id.into(),
        })
    }

    fn policy(&self, app: &str) -> Option<Arc<Policy>> {
        self.policies.lock().unwrap().get(app).cloned()
    }
}

struct Setup {
    proxy: SocketAddr,
    table: Arc<Table>,
    ledger: Arc<Ledger>,
    http: Upstream,
    https: Upstream,
}

/// A proxy whose guard lets through the two upstreams (and `extra`), with
/// `config` adjusted by `tune`; both apps start with default allow.
async fn setup_with(
    extra: &[SocketAddr],
    tune: impl FnOnce(&mut EgressConfig),
    tokenizer: Option<roost_tokenizer::Tokenizer>,
) -> Setup {
    let http = upstream::http_upstream().await;
    let https = upstream::tls_upstream().await;
    let mut allowed = vec![http.addr, https.addr];
    allowed.extend_from_slice(extra);
    let mut config = EgressConfig {
        guard: Guard::new(GuardConfig {
            site: Some(Site {
                prefix: Prefix::new("fdaa:7e57::".parse().unwrap(), 32),
                app_prefix_len: 48,
            }),
            allowed,
        }),
        tokenizer,
        ..EgressConfig::default()
    };
    tune(&mut config);
    let table = Arc::new(Table::default());
    table.set("a", EgressDefault::Allow, &[], &[]);
    table.set("b", EgressDefault::Allow, &[], &[]);
    let ledger = Arc::new(Ledger::default());
    let egress = EgressProxy::new(config, table.clone(), ledger.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let workers = egress.workers(2).unwrap();
    tokio::spawn(async move { workers.serve(&listener, std::future::pending()).await });
    Setup {
        proxy,
        table,
        ledger,
        http,
        https,
    }
}

async fn setup() -> Setup {
    setup_with(&[], |_| {}, None).await
}

/// A connection to the proxy from loopback address `from`.
async fn connect_from(from: &str, proxy: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(proxy).await.unwrap()
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.head, self.body))
    }
}

/// Reads one answer: the head, then a Content-Length body (or until close).
async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(usize::MAX);
            if body.len() >= length {
                return reply(head, body);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut chunk))
            .await
            .expect("no answer within 20 s")
            .unwrap_or(0);
        if n == 0 {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            return reply(head, body);
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

fn reply(head: &str, body: &str) -> Reply {
    Reply {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Sends `request` from `from` on a new connection and reads the answer.
async fn send(from: &str, proxy: SocketAddr, request: &str) -> Reply {
    let mut stream = connect_from(from, proxy).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    read_reply(&mut stream).await
}

fn get(target: &str) -> String {
    let host = target
        .strip_prefix("http://")
        .and_then(|t| t.split('/').next())
        .unwrap_or("");
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Basic c2VjcmV0\r\nConnection: close\r\n\r\n")
}

fn connect(authority: &str) -> String {
    format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n")
}

/// Asserts a 403 whose body names `host`, a rule starting with
/// `rule` and a way to allow it mentioning `allow_with`.
fn assert_refused(reply: &Reply, host: &str, rule: &str, allow_with: &str) {
    assert_eq!(reply.status, 403, "{} {}", reply.head, reply.body);
    let body = reply.json();
    assert_eq!(body["host"], host, "{body}");
    let got_rule = body["rule"].as_str().unwrap();
    assert!(
        got_rule.starts_with(rule),
        "rule {got_rule:?}, wanted {rule:?}: {body}"
    );
    let how = body["allow_with"].as_str().unwrap();
    assert!(how.contains(allow_with), "{allow_with:?} not in {how:?}");
    assert!(body["error"].as_str().unwrap().contains(host), "{body}");
}

#[tokio::test]
async fn plain_http_and_connect_reach_allowed_upstreams() {
    let s = setup().await;
    let target = format!("http://{}/path?q=1", s.http.addr);
    let reply = send(A, s.proxy, &get(&target)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echo = reply.json();
    assert_eq!(echo["path"], "/path?q=1");
    assert_eq!(echo["headers"]["host"][0], s.http.addr.to_string());
    assert!(
        echo["headers"].get("proxy-authorization").is_none(),
        "{echo}"
    );

    // CONNECT, then TLS to the HTTPS upstream through the tunnel.
    let mut stream = connect_from(A, s.proxy).await;
    stream
        .write_all(connect(&format!("localhost:{}", s.https.addr.port())).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let body = tls_get(stream, &s.https, "/over-tls").await;
    assert!(body.contains("\"path\":\"/over-tls\""), "{body}");

    let log = s.ledger.log("a").entries;
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        (
            log[0].method.as_str(),
            log[0].decision.as_str(),
            log[0].rule.as_str()
        ),
        ("GET", "allowed", "default allow")
    );
    assert_eq!(
        (log[1].method.as_str(), log[1].host.as_str()),
        ("CONNECT", "localhost")
    );
    assert!(
        log.iter().all(|e| e.bytes_sent > 0 && e.bytes_received > 0),
        "{log:?}"
    );
    let counters = s.ledger.machine("machine-a").unwrap();
    assert_eq!(counters.allowed, 2);
    assert_eq!(
        counters.bytes_received,
        log.iter().map(|e| e.bytes_received).sum::<u64>()
    );
}

/// GET `path` over TLS on `stream` (a tunnel to `upstream`); the body.
async fn tls_get(stream: TcpStream, upstream: &Upstream, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(upstream.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, stream).await.unwrap();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn every_destination_class_is_refused_whatever_the_policy() {
    let s = setup().await;
    let port = s.http.addr.port();
    let cases = [
        // Resolves to the host's loopback (no exception for this port).
        ("localhost".to_string(), port + 1, "is the host's loopback"),
        ("127.0.0.1".into(), port + 1, "is the host's loopback"),
        ("::1".into(), 80, "is the host's loopback"),
        ("0.0.0.0".into(), 80, "unspecified"),
        ("169.254.169.254".into(), 80, "link-local"),
        ("fe80::1".into(), 80, "link-local"),
        ("10.0.0.1".into(), 80, "IPv4 private range"),
        ("172.16.0.1".into(), 80, "IPv4 private range"),
        ("192.168.0.1".into(), 80, "IPv4 private range"),
        ("100.100.100.200".into(), 80, "shared address space"),
        (
            "fdaa:7e57:2::2".into(),
            80,
            "roost's private network outside",
        ),
        (
            "fdaa:7e57::3".into(),
            4280,
            "roost's private network outside",
        ),
        ("fd00:ec2::254".into(), 80, "unique-local"),
    ];
    for (host, port, class) in cases {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        for request in [get(&format!("http://{authority}/")), connect(&authority)] {
            let reply = send(A, s.proxy, &request).await;
            assert_refused(&reply, &host, "guard: ", "--egress-allow-addr");
            let body = reply.json();
            assert!(
                body["rule"].as_str().unwrap().contains(class),
                "{class:?}: {body}"
            );
        }
    }
    assert_eq!(s.http.hits(), 0);
    let log = s.ledger.log("a").entries;
    assert!(log
        .iter()
        .all(|e| e.decision == "refused" && e.rule.starts_with("guard: ")));
    assert_eq!(
        s.ledger.machine("machine-a").unwrap().refused,
        log.len() as u64
    );
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_unless_its_address_is_an_exception() {
    let s = setup().await;
    let by_name = format!("http://localhost:{}/", s.http.addr.port());
    // The upstream listens on 127.0.0.1, the exception: localhost reaches it.
    let reply = send(A, s.proxy, &get(&by_name)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Without the exception, the same name is refused after resolution.
    let closed = setup_with(&[], |c| c.guard = Guard::default(), None).await;
    let by_name = format!("http://localhost:{}/", closed.http.addr.port());
    let reply = send(A, closed.proxy, &get(&by_name)).await;
    assert_refused(&reply, "localhost", "guard: ", "--egress-allow-addr");
    assert_eq!(closed.http.hits(), 0);
}

#[tokio::test]
async fn policy_changes_apply_to_the_next_request_and_apps_keep_their_own() {
    let s = setup().await;
    let authority = s.http.addr.to_string();
    let pattern = authority.clone();
    s.table.set("a", EgressDefault::Deny, &[], &[]);
    // One keep-alive connection of app a across three policies.
    let mut stream = connect_from(A, s.proxy).await;
    let keep_alive = format!("GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(keep_alive.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream).await;
    assert_refused(
        &reply,
        "127.0.0.1",
        "default deny",
        &format!("roost egress allow -a a {pattern}"),
    );
    s.table.set("a", EgressDefault::Deny, &[&pattern], &[]);
    stream.write_all(keep_alive.as_bytes()).await.unwrap();
    assert_eq!(read_reply(&mut stream).await.status, 200);
    s.table
        .set("a", EgressDefault::Deny, &[&pattern], &["127.0.0.1"]);
    stream.write_all(keep_alive.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream).await;
    assert_refused(
        &reply,
        "127.0.0.1",
        "deny 127.0.0.1",
        "remove \"127.0.0.1\" from the app's deny list",
    );

    // App b is untouched by a's policy; a's log holds only a's decisions.
    assert_eq!(
        send(B, s.proxy, &get(&format!("http://{authority}/")))
            .await
            .status,
        200
    );
    s.table.set("b", EgressDefault::Deny, &[], &[]);
    let reply = send(B, s.proxy, &connect(&authority)).await;
    assert_refused(
        &reply,
        "127.0.0.1",
        "default deny",
        "roost egress allow -a b",
    );
    let a_log = s.ledger.log("a").entries;
    let rules: Vec<&str> = a_log.iter().map(|e| e.rule.as_str()).collect();
    assert_eq!(
        rules,
        [
            "default deny",
            &format!("allow {pattern}"),
            "deny 127.0.0.1"
        ]
    );
    assert!(a_log.iter().all(|e| e.machine_id == "machine-a"));
    let b_log = s.ledger.log("b").entries;
    assert_eq!(b_log.len(), 2);
    assert!(b_log.iter().all(|e| e.machine_id == "machine-b"));
    assert_eq!(b_log[1].decision, "refused");
    // A client that is no machine gets nothing.
    let reply = send(NOBODY, s.proxy, &get(&format!("http://{authority}/"))).await;
    assert_eq!(reply.status, 403);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("no machine's address"));
    assert_eq!(s.http.hits(), 2);
}

#[tokio::test]
async fn tokenizer_requests_get_their_credential_and_leave_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let key = roost_tokenizer::OpenKey::load_or_create(&dir.path().join("key")).unwrap();
    let https = upstream::tls_upstream().await;
    let tokenizer = roost_tokenizer::Tokenizer::new(
        key,
        &roost_tokenizer::TokenizerConfig {
            extra_ca_files: vec![https.ca_file.clone()],
            ..Default::default()
        },
    )
    .unwrap();
    let seal = tokenizer.seal_key();
    let s = setup_with(&[https.addr], |_| {}, Some(tokenizer)).await;
    let target = format!("localhost:{}", https.addr.port());
    let secret = serde_json::json!({"inject_processor": {"token": "real-token"}, "no_auth": {}, "allowed_hosts": [target]});
    let sealed = seal.seal(secret.to_string().as_bytes()).unwrap();
    let request = format!(
        "GET http://{target}/api HTTP/1.1\r\nHost: {target}\r\nProxy-Tokenizer: {sealed}\r\nConnection: close\r\n\r\n"
    );
    let reply = send(A, s.proxy, &request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echo = reply.json();
    assert_eq!(echo["headers"]["authorization"][0], "Bearer real-token");
    assert!(echo["headers"].get("proxy-tokenizer").is_none());
    assert_eq!(https.hits(), 1);
    let entry = s.ledger.log("a").entries.pop().unwrap();
    assert!(
        entry.tokenizer && entry.decision == "allowed" && entry.bytes_received > 0,
        "{entry:?}"
    );

    // The app's policy governs tokenizer requests too; the tokenizer's
    // own refusals keep their status.
    s.table.set("a", EgressDefault::Deny, &[], &[]);
    let reply = send(A, s.proxy, &request).await;
    assert_refused(
        &reply,
        "localhost",
        "default deny",
        "roost egress allow -a a localhost:",
    );
    let forged = request.replace(&sealed, "not-a-token");
    assert_eq!(send(A, s.proxy, &forged).await.status, 400);
    assert_eq!(https.hits(), 1);
}

#[tokio::test]
async fn machines_are_held_to_their_connection_limit() {
    let s = setup_with(&[], |c| c.max_connections_per_machine = 2, None).await;
    let target = format!("http://{}/", s.http.addr);
    let _first = connect_from(A, s.proxy).await;
    let _second = connect_from(A, s.proxy).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = send(A, s.proxy, &get(&target)).await;
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("its limit"));
    // Another machine is not affected; closing one gives a slot back.
    assert_eq!(send(B, s.proxy, &get(&target)).await.status, 200);
    drop(_first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(send(A, s.proxy, &get(&target)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.ledger.machine("machine-a").unwrap().open_connections, 1);

    // An open tunnel holds its slot after the CONNECT has been answered.
    let mut tunnel = connect_from(A, s.proxy).await;
    tunnel
        .write_all(connect(&s.http.addr.to_string()).as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tunnel.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.ledger.machine("machine-a").unwrap().open_connections, 2);
    assert_eq!(send(A, s.proxy, &get(&target)).await.status, 429);
    drop(tunnel);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(send(A, s.proxy, &get(&target)).await.status, 200);
}

#[tokio::test]
async fn bad_input_gets_a_clear_answer_or_a_bounded_close() {
    let s = setup_with(&[], |c| c.header_timeout = Duration::from_secs(1), None).await;
    let authority = s.http.addr.to_string();
    s.table.set("a", EgressDefault::Allow, &[], &["*:25"]);
    let cases = [
        (
            "GET /origin-form HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            400,
            "absolute-form",
        ),
        (
            format!("GET http://{authority}/ HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n"),
            400,
            "Host header disagrees",
        ),
        (
            "GET http://user@example.com/ HTTP/1.1\r\n\r\n".into(),
            400,
            "without user info",
        ),
        (
            "GET https://example.com/ HTTP/1.1\r\n\r\n".into(),
            400,
            "CONNECT host:port for TLS",
        ),
        (
            "CONNECT example.com HTTP/1.1\r\n\r\n".into(),
            400,
            "needs a port",
        ),
        ("CONNECT bad_host!:443 HTTP/1.1\r\n\r\n".into(), 400, ""),
        (connect("mail.example.com:25"), 403, "deny *:25"),
    ];
    for (request, status, needle) in cases {
        let reply = send(A, s.proxy, &request).await;
        assert_eq!(
            reply.status, status,
            "{request:?}: {} {}",
            reply.head, reply.body
        );
        assert!(
            reply.body.contains(needle),
            "{request:?}: {needle:?} not in {}",
            reply.body
        );
    }
    // Absurd Host headers and targets: bad characters, empty, twice, huge.
    let absurd = [
        ("Host: exa mple.com".to_string(), "not host[:port]"),
        ("Host: <script>".to_string(), "not host[:port]"),
        ("Host: example.com/path".to_string(), "not host[:port]"),
        ("Host: ".to_string(), "not host[:port]"),
        (
            format!("Host: {authority}\r\nHost: evil.example"),
            "more than one Host",
        ),
    ];
    for (host, needle) in absurd {
        let request = format!("GET http://{authority}/ HTTP/1.1\r\n{host}\r\n\r\n");
        let reply = send(A, s.proxy, &request).await;
        assert_eq!(reply.status, 400, "{host:?}: {} {}", reply.head, reply.body);
        assert!(reply.body.contains(needle), "{host:?}: {}", reply.body);
    }
    let long_name = format!("{}.example", "a".repeat(300));
    for request in [
        get(&format!("http://{long_name}/")),
        connect(&format!("{long_name}:443")),
        "CONNECT :443 HTTP/1.1\r\n\r\n".to_string(),
        "GET http:///path HTTP/1.1\r\n\r\n".to_string(),
    ] {
        let reply = send(A, s.proxy, &request).await;
        assert_eq!(
            reply.status, 400,
            "{request:?}: {} {}",
            reply.head, reply.body
        );
    }
    // A head larger than the proxy takes (64 KiB), in the Host header or
    // the target, and garbage.
    let huge_host = format!(
        "GET http://{authority}/ HTTP/1.1\r\nHost: {}\r\n\r\n",
        "h".repeat(100_000)
    );
    let huge_target = format!(
        "GET http://{}.example/ HTTP/1.1\r\n\r\n",
        "h".repeat(100_000)
    );
    for huge in [huge_host, huge_target] {
        let too_large = send(A, s.proxy, &huge).await.status;
        assert!(matches!(too_large, 414 | 431), "{too_large}");
    }
    assert_eq!(
        send(A, s.proxy, "\x16\x03\x01 not http\r\n\r\n")
            .await
            .status,
        400
    );

    // A slowloris client is cut off within the header timeout, and meanwhile
    // another request is answered at once.
    let mut slow = connect_from(A, s.proxy).await;
    slow.write_all(b"GET http://example.com/ HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let fast = send(B, s.proxy, &get(&format!("http://{authority}/"))).await;
    assert_eq!(fast.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the slow client was not cut off");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// CONNECT tunnels pass bytes the client sent with the CONNECT itself,
/// carry large bodies both ways intact, count every byte for the decision
/// and the machine, and close once nothing has moved for the idle bound.
#[tokio::test]
async fn tunnels_carry_every_byte_counted_and_close_when_idle() {
    let s = setup_with(&[], |c| c.idle_timeout = Duration::from_secs(1), None).await;
    let authority = s.http.addr.to_string();
    // The request through the tunnel rides in the CONNECT's own packet.
    let body = "x".repeat(4 * 1024 * 1024);
    let inner = format!(
        "POST /big HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = connect_from(A, s.proxy).await;
    stream
        .write_all(format!("{}{inner}", connect(&authority)).as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the tunnel ends when the upstream closes")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (connected, echoed) = answer.split_once("\r\n\r\n").unwrap();
    assert!(connected.starts_with("HTTP/1.1 200"), "{connected}");
    let (_, echo) = echoed.split_once("\r\n\r\n").unwrap();
    let echo: serde_json::Value = serde_json::from_str(echo).unwrap();
    assert_eq!(echo["path"], "/big");
    assert_eq!(echo["body"].as_str().unwrap().len(), body.len());
    // The client's half stays open until it closes too.
    assert!(s.ledger.log("a").entries[0].open);
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let entry = s.ledger.log("a").entries.pop().unwrap();
    assert!(!entry.open, "{entry:?}");
    assert_eq!(entry.bytes_sent, inner.len() as u64, "{entry:?}");
    assert_eq!(entry.bytes_received, echoed.len() as u64, "{entry:?}");
    let counters = s.ledger.machine("machine-a").unwrap();
    assert_eq!(
        (counters.bytes_sent, counters.bytes_received),
        (entry.bytes_sent, entry.bytes_received)
    );

    // A tunnel neither end uses is closed after the idle bound (1 s here),
    // and gives its machine's connection slot back.
    let mut quiet = connect_from(A, s.proxy).await;
    quiet
        .write_all(connect(&authority).as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), quiet.read_to_end(&mut rest))
        .await
        .expect("an idle tunnel is closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.ledger.machine("machine-a").unwrap().open_connections, 0);
}

/// Slowloris: many clients of one machine trickle request heads a byte at
/// a time, or connect and send nothing. Another machine's requests are
/// answered at once throughout; every slow client is closed when the
/// header timeout ends, however busily it trickles; past twice its limit
/// a machine's new connections are closed at once, so it cannot hoard the
/// host's descriptors.
#[tokio::test]
async fn slowloris_clients_are_cut_off_and_other_machines_keep_their_egress() {
    const LIMIT: usize = 40;
    let timeout = Duration::from_secs(1);
    let s = setup_with(
        &[],
        |c| {
            c.header_timeout = timeout;
            c.max_connections_per_machine = LIMIT;
        },
        None,
    )
    .await;
    let target = format!("http://{}/", s.http.addr);
    let started = Instant::now();
    // LIMIT trickling clients hold A's slots...
    let mut trickling = Vec::new();
    for _ in 0..LIMIT {
        let mut stream = connect_from(A, s.proxy).await;
        trickling.push(tokio::spawn(async move {
            let head = format!(
                "GET {} HTTP/1.1\r\nX-Slow: {}",
                "http://example.com/",
                "a".repeat(200)
            );
            for byte in head.bytes() {
                if stream.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
            Instant::now()
        }));
    }
    // ...LIMIT silent ones are turned away but wait for their request...
    let mut silent = Vec::new();
    for _ in 0..LIMIT {
        silent.push(connect_from(A, s.proxy).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let counters = s.ledger.machine("machine-a").unwrap();
    assert_eq!(counters.open_connections, LIMIT as u64);
    // ...and past those, a connection is closed unanswered at once.
    for _ in 0..LIMIT {
        let mut extra = connect_from(A, s.proxy).await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_millis(500), extra.read_to_end(&mut rest))
            .await
            .expect("a connection past twice the limit is closed at once");
        assert!(
            read.map_or(true, |n| n == 0),
            "{:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    // Meanwhile machine B's requests are answered at once.
    for _ in 0..20 {
        let asked = Instant::now();
        let reply = send(B, s.proxy, &get(&target)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            asked.elapsed() < Duration::from_millis(300),
            "{:?}",
            asked.elapsed()
        );
    }
    assert!(
        started.elapsed() < timeout,
        "the slow clients were not open all along"
    );

    // Every slow client is closed when the header timeout ends.
    let bound = timeout + Duration::from_secs(1);
    for client in trickling {
        let closed = client.await.unwrap();
        assert!(
            closed - started < bound,
            "a trickling client lasted {:?}",
            closed - started
        );
    }
    for mut client in silent {
        let mut rest = Vec::new();
        let left = (started + bound).saturating_duration_since(Instant::now());
        tokio::time::timeout(left, client.read_to_end(&mut rest))
            .await
            .expect("a silent client is closed when the header timeout ends")
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.ledger.machine("machine-a").unwrap().open_connections, 0);
    assert_eq!(send(A, s.proxy, &get(&target)).await.status, 200);
}

/// A raw HTTP/1.1 upstream on loopback for the forward path's framings:
/// `/length/N` (a Content-Length body of N bytes), `/chunked` (three
/// chunks), `/until-close` (no framing: the body ends when it closes),
/// `/short` (a Content-Length it does not honour). One request per
/// connection; every request head it got is kept.
async fn framing_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(head);
                let answer = if let Some(n) = path.strip_prefix("/length/") {
                    let n: usize = n.parse().unwrap();
                    let mut a =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
                    a.extend((0..n).map(|i| (i % 251) as u8));
                    a
                } else if path == "/chunked" {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\n\r\n".to_vec()
                } else if path == "/until-close" {
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, until the end"
                        .to_vec()
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this".to_vec()
                };
                let _ = stream.write_all(&answer).await;
            });
        }
    });
    (addr, heads)
}

/// Reads from `stream` until it closes, within 10 s.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the proxy closes the connection")
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sends `request` from machine A on a new connection: all that comes
/// back until the proxy closes it.
async fn send_to_close(proxy: SocketAddr, request: &str) -> String {
    let mut stream = connect_from(A, proxy).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    read_to_close(&mut stream).await
}

/// Plain-HTTP forwarding, whose response bodies the kernel moves: every
/// framing arrives whole (a Content-Length body on a kept-alive connection
/// carrying pipelined requests, HEAD, a chunked body passed on as it came,
/// a body that ends when the upstream closes), an upstream that breaks its
/// Content-Length gets the client connection closed, not hung, and a
/// CONNECT pipelined after a forwarded GET still opens its tunnel.
#[tokio::test]
async fn forwarded_responses_arrive_whole_in_every_framing() {
    let (upstream, heads) = framing_upstream().await;
    let s = setup_with(&[upstream], |_| {}, None).await;
    let base = format!("http://{upstream}");
    let plain = |method: &str, path: &str| {
        format!("{method} {base}{path} HTTP/1.1\r\nHost: {upstream}\r\nProxy-Authorization: Basic c2VjcmV0\r\n\r\n")
    };

    // Three requests in one write on one connection.
    let mut stream = connect_from(A, s.proxy).await;
    let pipelined = [
        plain("GET", "/length/3000000"),
        plain("HEAD", "/length/100"),
        plain("GET", "/chunked"),
    ]
    .concat();
    stream.write_all(pipelined.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("content-length: 3000000\r\n"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let mut body = vec![0u8; 3_000_000];
    stream.read_exact(&mut body).await.unwrap();
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    let rest = read_to_close(&mut stream).await;
    let (head_reply, chunked) = rest.split_once("\r\n\r\n").unwrap();
    assert!(
        head_reply.contains("Content-Length: 100") || head_reply.contains("content-length: 100"),
        "{head_reply}"
    );
    let (chunked_head, chunked_body) = chunked.split_once("\r\n\r\n").unwrap();
    assert!(
        chunked_head.starts_with("HTTP/1.1 200 OK"),
        "{chunked_head}"
    );
    assert!(
        chunked_head.contains("transfer-encoding: chunked"),
        "{chunked_head}"
    );
    assert!(chunked_head.contains("connection: close"), "{chunked_head}");
    assert_eq!(
        chunked_body,
        "5\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\n\r\n"
    );

    // The upstream got origin form, the target's Host, no proxy or
    // hop-by-hop headers, and was asked to close.
    let seen = heads.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for head in &seen {
        let lower = head.to_ascii_lowercase();
        assert!(
            head.starts_with("GET /length/3000000 ")
                || head.starts_with("HEAD /")
                || head.starts_with("GET /chunked "),
            "{head}"
        );
        assert!(lower.contains(&format!("host: {upstream}\r\n")), "{head}");
        assert!(!lower.contains("proxy-authorization"), "{head}");
        assert!(lower.contains("connection: close\r\n"), "{head}");
    }

    // No framing at all: the body ends when the upstream closes, and so
    // does the client's connection.
    let reply = send_to_close(s.proxy, &plain("GET", "/until-close")).await;
    assert!(reply.contains("connection: close\r\n"), "{reply}");
    assert!(
        reply.ends_with("\r\n\r\nall of it, until the end"),
        "{reply}"
    );

    // A body shorter than its Content-Length: the client sees the
    // connection close after what came.
    let reply = send_to_close(s.proxy, &plain("GET", "/short")).await;
    assert!(reply.ends_with("\r\n\r\nonly this"), "{reply}");

    // A forwarded GET, then a CONNECT in the same write: the tunnel opens
    // after the answer, and carries a request to the upstream.
    let inner = format!("GET /length/10 HTTP/1.1\r\nHost: {upstream}\r\n\r\n");
    let both = [
        plain("GET", "/length/5"),
        connect(&upstream.to_string()),
        inner,
    ]
    .concat();
    let reply = send_to_close(s.proxy, &both).await;
    let parts: Vec<&str> = reply.split("\r\n\r\n").collect();
    assert_eq!(parts.len(), 4, "{reply:?}");
    assert!(parts[0].starts_with("HTTP/1.1 200 OK"), "{reply:?}");
    assert!(
        parts[1].starts_with("\u{0}\u{1}\u{2}\u{3}\u{4}HTTP/1.1 200 "),
        "{reply:?}"
    );
    assert!(parts[2].starts_with("HTTP/1.1 200 OK"), "{reply:?}");
    assert_eq!(parts[3].as_bytes(), (0..10).collect::<Vec<u8>>());

    // Every byte the upstream sent counts for its decision and the machine.
    let log = s.ledger.log("a").entries;
    assert_eq!(log.len(), 7, "{log:?}");
    assert!(log[0].bytes_received > 3_000_000, "{:?}", log[0]);
    assert!(
        log.iter().all(|e| e.bytes_sent > 0 && e.bytes_received > 0),
        "{log:?}"
    );
    let counters = s.ledger.machine("machine-a").unwrap();
    assert_eq!(
        counters.bytes_received,
        log.iter().map(|e| e.bytes_received).sum::<u64>()
    );
}
