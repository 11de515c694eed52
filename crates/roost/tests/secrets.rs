//! App secrets and the tokenizer through a real `roost up`: secrets reach
//! machines at their next start and never leave in a response or a log;
//! the tokenizer runs on its listener with its key in the data dir, and a
//! token sealed by `roost tokenizer seal` is injected into a request.

mod common;

use common::{free_port, Daemon, APP, IMAGE};
use sha2::Digest;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const FIRST: &str = "sv-first-7f3a9c";
const SECOND: &str = "sv-second-c41d02";
const REAL_TOKEN: &str = "real-upstream-token-5be2";

fn roost(daemon: &Daemon, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(args)
        .env("ROOST_API_URL", &daemon.url)
        .env("ROOST_DATA_DIR", daemon.data_dir())
        .env_remove("ROOST_API_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run roost");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("roost output")
}

fn ok(daemon: &Daemon, args: &[&str], stdin: &str) -> String {
    let out = roost(daemon, args, stdin);
    assert!(
        out.status.success(),
        "roost {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

async fn seen(daemon: &Daemon, id: &str) -> String {
    let out = daemon
        .client()
        .exec(
            APP,
            id,
            &roost_types::ExecRequest {
                command: vec!["cat".into(), "/seen".into()],
                ..Default::default()
            },
        )
        .await
        .expect("exec");
    out.stdout.trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn app_secrets_reach_machines_at_their_next_start() {
    let daemon = Daemon::start().await;
    ok(
        &daemon,
        &[
            "secrets",
            "set",
            "-a",
            APP,
            &format!("API_KEY={FIRST}"),
            "OTHER=x",
        ],
        "",
    );
    let listing = ok(&daemon, &["secrets", "list", "-a", APP, "--json"], "");
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let names: Vec<&str> = listing["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["API_KEY", "OTHER"]);
    let first_digest = listing["secrets"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!listing.to_string().contains(FIRST));

    let id = ok(
        &daemon,
        &[
            "machine",
            "run",
            IMAGE,
            "-a",
            APP,
            "--",
            "sh",
            "-c",
            "echo \"v=$API_KEY\" > /seen; exec sleep 1000",
        ],
        "",
    );
    let id = id.trim();
    assert_eq!(seen(&daemon, id).await, format!("v={FIRST}"));

    // Set from stdin; the running machine keeps what it started with.
    let listing = ok(
        &daemon,
        &["secrets", "set", "-a", APP],
        &format!("API_KEY={SECOND}\n"),
    );
    assert!(
        !listing.contains(SECOND) && !listing.contains(&first_digest),
        "{listing}"
    );
    assert_eq!(seen(&daemon, id).await, format!("v={FIRST}"));
    ok(&daemon, &["machine", "stop", id, "-a", APP], "");
    ok(&daemon, &["machine", "start", id, "-a", APP], "");
    assert_eq!(seen(&daemon, id).await, format!("v={SECOND}"));

    ok(&daemon, &["secrets", "unset", "-a", APP, "API_KEY"], "");
    ok(&daemon, &["machine", "restart", id, "-a", APP], "");
    assert_eq!(seen(&daemon, id).await, "v=");

    let bad = roost(
        &daemon,
        &["secrets", "set", "-a", APP, "FLY_APP_NAME=x"],
        "",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("reserved"));
    let wrong_shape = daemon
        .http(reqwest::Method::POST, &format!("/v1/apps/{APP}/secrets"))
        .json(&serde_json::json!({ "values": FIRST }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_shape.status().as_u16(), 400);
    let message = wrong_shape.text().await.unwrap();
    assert!(
        message.contains("expected") && !message.contains(FIRST),
        "{message}"
    );
    let machine = daemon.client().get_machine(APP, id).await.unwrap();
    let machine = serde_json::to_string(&machine).unwrap();
    let log = daemon.log();
    for value in [FIRST, SECOND] {
        assert!(
            !machine.contains(value),
            "a secret value in the machine's API view"
        );
        assert!(!log.contains(value), "a secret value in roost's log");
    }
    let stored = std::fs::read(daemon.data_dir().join("roost.db")).unwrap();
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        !stored.contains(FIRST) && !stored.contains(SECOND),
        "plaintext in the database"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(daemon.data_dir().join("secrets.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A plain-HTTP upstream (allowed with --tokenizer-plain-http-upstream)
/// that echoes the headers it receives.
async fn echo_upstream() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let headers: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        axum::Json(headers)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn tokenizer_runs_in_roost_up() {
    let upstream = echo_upstream().await;
    let tokenizer = format!("127.0.0.1:{}", free_port());
    let daemon = Daemon::start_with_args(&[
        "--tokenizer-listen",
        &tokenizer,
        "--tokenizer-plain-http-upstream",
        &upstream.to_string(),
    ])
    .await;
    let key = daemon.client().tokenizer_public_key().await.unwrap();
    assert_eq!(key.len(), 64);
    assert_eq!(ok(&daemon, &["tokenizer", "public-key"], "").trim(), key);
    use std::os::unix::fs::PermissionsExt;
    let key_file = daemon.data_dir().join("tokenizer/open-key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    use base64::Engine;
    let digest =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"robot-pw"));
    let secret = serde_json::json!({
        "inject_processor": {"token": REAL_TOKEN},
        "bearer_auth": {"digest": digest},
        "allowed_hosts": [upstream.to_string()],
    });
    let sealed = ok(&daemon, &["tokenizer", "seal"], &secret.to_string());
    let sealed = sealed.trim();
    assert!(!sealed.contains(REAL_TOKEN));

    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{tokenizer}")).unwrap())
        .build()
        .unwrap();
    let send = |auth: &'static str| {
        client
            .get(format!("http://{upstream}/v1/thing"))
            .header("Proxy-Tokenizer", sealed)
            .header("Proxy-Authorization", auth)
            .send()
    };
    let echo: serde_json::Value = send("Bearer robot-pw").await.unwrap().json().await.unwrap();
    assert_eq!(echo["authorization"], format!("Bearer {REAL_TOKEN}"));
    assert!(echo.get("proxy-tokenizer").is_none() && echo.get("proxy-authorization").is_none());
    let refused = send("Bearer wrong").await.unwrap();
    assert_eq!(refused.status().as_u16(), 407);
    assert!(!refused.text().await.unwrap().contains(REAL_TOKEN));

    let bad = roost(
        &daemon,
        &["tokenizer", "seal", "--key", &key],
        "{\"inject_processor\": {\"token\": \"t\"}}",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("exactly one auth"));
    assert!(!daemon.log().contains(REAL_TOKEN));
}
