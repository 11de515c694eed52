//! The tokenizer end to end: a real TLS upstream on loopback, tokens sealed
//! by PyNaCl and by roost, every processor, auth and host rule, and the
//! refusals (which must never reach the upstream).

use roost_testkit::upstream::{self, Upstream};

use base64::Engine;
use roost_destination_guard::{Guard, GuardConfig};
use roost_tokenizer::{OpenKey, SealKey, Tokenizer, TokenizerConfig};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    upstream: Upstream,
    proxy: SocketAddr,
    seal_key: SealKey,
    _dir: tempfile::TempDir,
}

/// A tokenizer whose guard lets it reach the loopback upstream.
async fn setup() -> Setup {
    setup_allowing(|upstream| vec![upstream.addr]).await
}

/// A tokenizer whose guard lets through exactly the addresses `allowed`
/// names (the upstream's, say).
async fn setup_allowing(allowed: impl FnOnce(&Upstream) -> Vec<SocketAddr>) -> Setup {
    let upstream = upstream::tls_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let key = OpenKey::load_or_create(&dir.path().join("open-key")).unwrap();
    let config = TokenizerConfig {
        extra_ca_files: vec![upstream.ca_file.clone()],
        plain_http_upstreams: Vec::new(),
        guard: Guard::new(GuardConfig {
            site: None,
            allowed: allowed(&upstream),
        }),
    };
    let tokenizer = Tokenizer::new(key, &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let seal_key = tokenizer.seal_key();
    let workers = tokenizer.workers(2).unwrap();
    tokio::spawn(async move { workers.serve(&listener, std::future::pending()).await });
    Setup {
        upstream,
        proxy,
        seal_key,
        _dir: dir,
    }
}

struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn echo(&self) -> serde_json::Value {
        assert_eq!(self.status, 200, "{}", self.body);
        serde_json::from_str(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.echo()["headers"][name][0].as_str().map(String::from)
    }
}

/// Sends one raw HTTP/1.1 request to the proxy and reads the reply.
async fn raw(proxy: SocketAddr, request: String) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut bytes),
    )
    .await
    .expect("the proxy did not close the connection after `Connection: close`")
    .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    Reply { status, body }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

impl Setup {
    fn target(&self) -> String {
        format!("localhost:{}", self.upstream.addr.port())
    }

    /// GET through the proxy with the given extra header lines.
    async fn get(&self, headers: &[String]) -> Reply {
        let target = self.target();
        let mut request = format!(
            "GET http://{target}/path?q=1 HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n"
        );
        for h in headers {
            request.push_str(h);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        raw(self.proxy, request).await
    }

    fn seal(&self, secret: serde_json::Value) -> String {
        self.seal_key.seal(secret.to_string().as_bytes()).unwrap()
    }

    /// Asserts that a request is refused with `status` and a message
    /// containing `needle`, and that the upstream saw nothing.
    async fn refused(&self, headers: &[String], status: u16, needle: &str) {
        let before = self.upstream.hits();
        let reply = self.get(headers).await;
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(
            reply.body.contains(needle),
            "{needle:?} not in {:?}",
            reply.body
        );
        assert_eq!(
            self.upstream.hits(),
            before,
            "the upstream was contacted on a refusal"
        );
    }
}

fn digest(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(token.as_bytes()))
}

fn bearer_secret(processor: serde_json::Value, token: &str) -> serde_json::Value {
    let mut secret = processor;
    secret["bearer_auth"] = serde_json::json!({"digest": digest(token)});
    secret
}

fn python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 (with PyNaCl: pip install pynacl)");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn inject_with_bearer_auth_and_pynacl_sealing() {
    let s = setup().await;
    let secret = bearer_secret(
        serde_json::json!({"inject_processor": {"token": "REAL-TOKEN"}}),
        "proxy-pw",
    );
    let sealed = python(
        "import sys, base64, nacl.public as p\n\
         key = p.PublicKey(bytes.fromhex(sys.argv[1]))\n\
         print(base64.b64encode(p.SealedBox(key).encrypt(sys.argv[2].encode())).decode())",
        &[&s.seal_key.to_string(), &secret.to_string()],
    );
    let reply = s
        .get(&[
            format!("Proxy-Tokenizer: {sealed}"),
            "Proxy-Authorization: Bearer proxy-pw".into(),
        ])
        .await;
    let echo = reply.echo();
    assert_eq!(echo["headers"]["authorization"][0], "Bearer REAL-TOKEN");
    assert_eq!(echo["path"], "/path?q=1");
    assert!(echo["headers"].get("proxy-tokenizer").is_none());
    assert!(echo["headers"].get("proxy-authorization").is_none());
    assert_eq!(echo["headers"]["host"][0], s.target());

    let basic = base64::engine::general_purpose::STANDARD.encode("anyone:proxy-pw");
    let reply = s
        .get(&[
            format!("Proxy-Tokenizer: {sealed}"),
            format!("Proxy-Authorization: Basic {basic}"),
        ])
        .await;
    assert_eq!(
        reply.header("authorization").as_deref(),
        Some("Bearer REAL-TOKEN")
    );

    let tokenizer = format!("Proxy-Tokenizer: {sealed}");
    s.refused(std::slice::from_ref(&tokenizer), 407, "proxy auth")
        .await;
    s.refused(
        &[
            tokenizer.clone(),
            "Proxy-Authorization: Bearer wrong".into(),
        ],
        407,
        "proxy auth",
    )
    .await;
    let wrong_basic = base64::engine::general_purpose::STANDARD.encode("u:wrong");
    s.refused(
        &[
            tokenizer,
            format!("Proxy-Authorization: Basic {wrong_basic}"),
        ],
        407,
        "proxy auth",
    )
    .await;
}

#[tokio::test]
async fn roost_sealed_tokens_open_with_pynacl() {
    let keys = python(
        "import nacl.public as p\nk = p.PrivateKey.generate()\nprint(bytes(k).hex(), bytes(k.public_key).hex())",
        &[],
    );
    let (private, public) = keys.split_once(' ').unwrap();
    let sealed = public
        .parse::<SealKey>()
        .unwrap()
        .seal(b"{\"hello\":1}")
        .unwrap();
    let opened = python(
        "import sys, base64, nacl.public as p\n\
         k = p.PrivateKey(bytes.fromhex(sys.argv[1]))\n\
         print(p.SealedBox(k).decrypt(base64.b64decode(sys.argv[2])).decode())",
        &[private, &sealed],
    );
    assert_eq!(opened, "{\"hello\":1}");
}

#[tokio::test]
async fn every_processor() {
    let s = setup().await;
    let no_auth = |mut v: serde_json::Value| {
        v["no_auth"] = serde_json::json!({});
        v
    };
    let sealed = s.seal(no_auth(
        serde_json::json!({"inject_processor": {"token": "T", "dst": "X-Api-Key", "fmt": "%s"}}),
    ));
    let reply = s.get(&[format!("Proxy-Tokenizer: {sealed}")]).await;
    assert_eq!(reply.header("x-api-key").as_deref(), Some("T"));

    let sealed = s.seal(no_auth(
        serde_json::json!({"inject_hmac_processor": {"key": "a2V5", "hash": "sha256"}}),
    ));
    let reply = s
        .get(&[format!("Proxy-Tokenizer: {sealed}; {{\"msg\": \"The quick brown fox jumps over the lazy dog\"}}")])
        .await;
    assert_eq!(
        reply.header("authorization").as_deref(),
        Some("Bearer f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    );
    let target = s.target();
    let body = "The quick brown fox jumps over the lazy dog";
    let reply = raw(
        s.proxy,
        format!(
            "POST http://{target}/sign HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\nProxy-Tokenizer: {sealed}; {{\"fmt\": \"sig=%X\", \"dst\": \"X-Sig\"}}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    let echo = reply.echo();
    assert_eq!(
        echo["headers"]["x-sig"][0],
        "sig=F7BC83F430538424B13298E6AA6FB143EF4D59A14946175997479DBC2D1A3CD8"
    );
    assert_eq!(echo["body"], body);

    let sealed = s.seal(no_auth(serde_json::json!({"oauth2_processor": {"token": {"access_token": "ACC", "refresh_token": "REF"}}})));
    let reply = s.get(&[format!("Proxy-Tokenizer: {sealed}")]).await;
    assert_eq!(reply.header("authorization").as_deref(), Some("Bearer ACC"));
    let reply = s
        .get(&[format!(
            "Proxy-Tokenizer: {sealed}; {{\"st\": \"refresh\"}}"
        )])
        .await;
    assert_eq!(reply.header("authorization").as_deref(), Some("Bearer REF"));

    let sealed = s.seal(no_auth(serde_json::json!({"sigv4_processor": {"access_key": "AKREAL", "secret_key": "real-secret"}})));
    let fake = "AWS4-HMAC-SHA256 Credential=AKFAKE/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000";
    let reply = s
        .get(&[
            format!("Proxy-Tokenizer: {sealed}"),
            format!("Authorization: {fake}"),
            "X-Amz-Date: 20260101T000000Z".into(),
        ])
        .await;
    let auth = reply.header("authorization").unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKREAL/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature="), "{auth}");
    assert!(!auth.ends_with("=0000"));

    let two = s.seal(no_auth(
        serde_json::json!({"inject_processor": {"token": "B", "dst": "X-B", "fmt": "%s"}}),
    ));
    let one = s.seal(no_auth(
        serde_json::json!({"inject_processor": {"token": "A", "dst": "X-A", "fmt": "%s"}}),
    ));
    let reply = s
        .get(&[
            format!("Proxy-Tokenizer: {one}"),
            format!("Proxy-Tokenizer: {two}"),
        ])
        .await;
    assert_eq!(reply.header("x-a").as_deref(), Some("A"));
    assert_eq!(reply.header("x-b").as_deref(), Some("B"));
}

#[tokio::test]
async fn hosts_are_checked_against_the_dialed_target() {
    let s = setup().await;
    let target = s.target();
    let allowed = s.seal(serde_json::json!({"inject_processor": {"token": "T"}, "no_auth": {}, "allowed_hosts": [target]}));
    let reply = s.get(&[format!("Proxy-Tokenizer: {allowed}")]).await;
    assert_eq!(reply.header("authorization").as_deref(), Some("Bearer T"));
    let pattern = s.seal(serde_json::json!({"inject_processor": {"token": "T"}, "no_auth": {}, "allowed_host_pattern": "localhost:[0-9]+"}));
    assert_eq!(
        s.get(&[format!("Proxy-Tokenizer: {pattern}")]).await.status,
        200
    );

    let elsewhere = s.seal(serde_json::json!({"inject_processor": {"token": "T"}, "no_auth": {}, "allowed_hosts": ["api.example.com"]}));
    s.refused(
        &[format!("Proxy-Tokenizer: {elsewhere}")],
        400,
        "not valid for host",
    )
    .await;
    let partial = s.seal(serde_json::json!({"inject_processor": {"token": "T"}, "no_auth": {}, "allowed_host_pattern": "local"}));
    s.refused(
        &[format!("Proxy-Tokenizer: {partial}")],
        400,
        "allowed_host_pattern",
    )
    .await;

    // A Host header naming an allowed host cannot redirect the check.
    let before = s.upstream.hits();
    let reply = raw(
        s.proxy,
        format!("GET http://{target}/ HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\nProxy-Tokenizer: {elsewhere}\r\n\r\n"),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("Host header disagrees"),
        "{}",
        reply.body
    );
    assert_eq!(s.upstream.hits(), before);
}

#[tokio::test]
async fn malformed_input_is_a_clear_400() {
    let s = setup().await;
    s.refused(&[], 400, "no Proxy-Tokenizer header").await;
    let seal = |v: serde_json::Value| s.seal(v);
    let full = seal(serde_json::json!({"inject_processor": {"token": "T"}, "no_auth": {}}));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&full)
        .unwrap();
    let cut = base64::engine::general_purpose::STANDARD.encode(&bytes[..bytes.len() - 5]);
    let dir = tempfile::tempdir().unwrap();
    let foreign = OpenKey::load_or_create(&dir.path().join("k"))
        .unwrap()
        .seal_key();
    let wrong_key = foreign
        .seal(br#"{"inject_processor":{"token":"T"},"no_auth":{}}"#)
        .unwrap();
    let not_json = s
        .seal_key
        .seal(b"{\"inject_processor\": {\"token\": \"SEKRIT\"")
        .unwrap();
    let two = seal(
        serde_json::json!({"inject_processor": {"token": "T"}, "oauth2_processor": {"token": {"access_token": "A"}}, "no_auth": {}}),
    );
    let no_auth = seal(serde_json::json!({"inject_processor": {"token": "T"}}));
    let fixed = seal(
        serde_json::json!({"inject_processor": {"token": "T", "fmt": "Token %s", "dst": "X-Key"}, "no_auth": {}}),
    );
    let listed = seal(
        serde_json::json!({"inject_processor": {"token": "T", "allowed_fmt": ["A %s", "B %s"], "allowed_dst": ["X-One", "X-Two"]}, "no_auth": {}}),
    );
    let reply = s.get(&[format!("Proxy-Tokenizer: {listed}")]).await;
    assert_eq!(reply.header("x-one").as_deref(), Some("A T"));

    let cases = [
        ("not*base64".to_string(), "not valid base64"),
        ("AAAA".into(), "truncated"),
        (cut, "cannot be opened"),
        (wrong_key, "not sealed to this tokenizer"),
        (not_json, "not valid JSON"),
        (two, "exactly one processor"),
        (no_auth, "exactly one auth"),
        (format!("{full}; not json"), "JSON object of strings"),
        (format!(r#"{fixed}; {{"fmt": "Bearer %s"}}"#), "bad fmt"),
        (format!(r#"{fixed}; {{"dst": "Authorization"}}"#), "bad dst"),
        (format!(r#"{listed}; {{"fmt": "C %s"}}"#), "allowed_fmt"),
        (format!(r#"{listed}; {{"dst": "X-Three"}}"#), "allowed_dst"),
        (
            format!(r#"{full}; {{"fmt": "%s\r\nX-Evil: 1"}}"#),
            "not allowed in a header",
        ),
        (format!(r#"{full}; {{"dst": "X-A\r\nX-Evil"}}"#), "bad dst"),
        (format!(r#"{full}; {{"dst": "Host"}}"#), "bad dst"),
    ];
    for (value, needle) in cases {
        s.refused(&[format!("Proxy-Tokenizer: {value}")], 400, needle)
            .await;
    }
}

#[tokio::test]
async fn the_guard_refuses_the_host_and_private_destinations() {
    let s = setup_allowing(|_| Vec::new()).await;
    let port = s.upstream.addr.port();
    let anywhere = s.seal(serde_json::json!({"inject_processor": {"token": "T"}, "no_auth": {}, "allowed_host_pattern": ".*"}));
    let cases = [
        // A name resolving to loopback is refused like the literal.
        (format!("localhost:{port}"), "is the host's loopback"),
        (
            format!("127.0.0.1:{port}"),
            "127.0.0.1 is the host's loopback",
        ),
        (format!("[::1]:{port}"), "::1 is the host's loopback"),
        (
            format!("[::ffff:127.0.0.1]:{port}"),
            "is the host's loopback",
        ),
        ("169.254.169.254".into(), "169.254.169.254 is link-local"),
        ("10.1.2.3:8080".into(), "10.1.2.3 is an IPv4 private range"),
        (
            "[fdaa::3]:4280".into(),
            "fdaa::3 is an IPv6 unique-local address",
        ),
    ];
    for (target, needle) in cases {
        let before = s.upstream.hits();
        let reply = raw(
            s.proxy,
            format!("GET http://{target}/ HTTP/1.1\r\nConnection: close\r\nProxy-Tokenizer: {anywhere}\r\n\r\n"),
        )
        .await;
        assert_eq!(reply.status, 403, "{target}: {}", reply.body);
        assert!(
            reply.body.contains("the tokenizer does not dial") && reply.body.contains(needle),
            "{target}: {needle:?} not in {}",
            reply.body
        );
        assert!(!reply.body.contains("Bearer T"));
        assert_eq!(s.upstream.hits(), before, "{target} reached the upstream");
    }
}

#[tokio::test]
async fn connect_origin_form_and_dead_upstreams() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = setup_allowing(|upstream| vec![upstream.addr, closed]).await;
    let target = s.target();
    let reply = raw(
        s.proxy,
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(reply.status, 405, "{}", reply.body);
    assert!(reply.body.contains("CONNECT is refused"));
    let reply = raw(
        s.proxy,
        format!("GET /path HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("absolute-form"), "{}", reply.body);

    let sealed = s.seal(serde_json::json!({"inject_processor": {"token": "T"}, "no_auth": {}}));
    let closed = closed.port();
    let reply = raw(
        s.proxy,
        format!("GET http://127.0.0.1:{closed}/ HTTP/1.1\r\nHost: 127.0.0.1:{closed}\r\nConnection: close\r\nProxy-Tokenizer: {sealed}\r\n\r\n"),
    )
    .await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.body.contains("upstream 127.0.0.1:"), "{}", reply.body);
    assert!(!reply.body.contains("Bearer T"));
}
