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
        "--egress-allow-addr",
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

/// Runs `script` under `sh -c` in machine `id` of `app`; stdout + stderr.
async fn sh_in(daemon: &Daemon, app: &str, id: &str, script: &str) -> String {
    let out = daemon.sh_in(app, id, script).await;
    format!("{}{}", out.stdout, out.stderr)
}

/// Issue 13, item 5: a sealed secret whose allowed host is another app's
/// machine or a host loopback service must not make the tokenizer dial
/// it for a machine, after resolution and whatever the secret allows;
/// the machine's own app stays reachable. On the code before the
/// destination guard, the tokenizer dialed all three (a TLS ClientHello
/// arrived).
#[tokio::test(flavor = "multi_thread")]
async fn security_tokenizer_dials_no_other_app_and_no_host_service() {
    let daemon = Daemon::start().await;
    const OTHER: &str = "e2e-other";
    daemon.client().create_app(OTHER).await.expect("create app");
    // A host service on loopback that counts the connections it accepts.
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let loopback_addr = loopback.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in loopback.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    // Another app's machine records whatever reaches its port 8443.
    let listener = roost_types::CreateMachineRequest {
        config: common::sh_config("touch /got; while :; do timeout 3 nc -l -p 8443 >> /got; done"),
        ..Default::default()
    };
    let create = |app: &'static str, request| {
        let client = daemon.client();
        async move { client.create_machine(app, &request).await.expect("create") }
    };
    let target = create(OTHER, listener.clone()).await;
    let neighbour = create(OTHER, listener).await;
    let attacker = create(
        APP,
        roost_types::CreateMachineRequest {
            config: common::sh_config("sleep inf"),
            ..Default::default()
        },
    )
    .await;

    let target_host = format!("[{}]:8443", target.private_ip);
    let secret = serde_json::json!({
        "inject_processor": {"token": REAL_TOKEN},
        "no_auth": {},
        "allowed_hosts": [target_host, loopback_addr.to_string()],
    });
    let sealed = ok(&daemon, &["tokenizer", "seal"], &secret.to_string());
    let tokenizer = format!("{} 4001", daemon.network().service_address());
    let through_tokenizer = |host: &str| {
        format!(
            // stdin stays open a while: the tokenizer (hyper) drops a
            // connection whose client half-closed it before the answer.
            "(printf 'GET http://{host}/ HTTP/1.1\\r\\nProxy-Tokenizer: {}\\r\\nConnection: close\\r\\n\\r\\n'; sleep 2) | timeout 10 nc {tokenizer}",
            sealed.trim()
        )
    };
    let got = |id: String| {
        let daemon = &daemon;
        async move {
            sh_in(daemon, OTHER, &id, "wc -c < /got")
                .await
                .trim()
                .to_string()
        }
    };

    for host in [target_host.as_str(), &loopback_addr.to_string()] {
        let answer = sh_in(&daemon, APP, &attacker.id, &through_tokenizer(host)).await;
        assert!(
            answer.starts_with("HTTP/1.1 403") && answer.contains("the tokenizer does not dial"),
            "{host}: {answer}\n{}",
            daemon.log()
        );
        assert!(!answer.contains(REAL_TOKEN));
    }
    assert_eq!(
        got(target.id.clone()).await,
        "0",
        "another app's machine was reached"
    );
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a host loopback service was reached"
    );

    // A machine of the same app is let through: the bytes arrive.
    let own = sh_in(
        &daemon,
        OTHER,
        &neighbour.id,
        &through_tokenizer(&target_host),
    )
    .await;
    let mut arrived = got(target.id.clone()).await;
    for _ in 0..50 {
        if arrived != "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        arrived = got(target.id.clone()).await;
    }
    assert_ne!(arrived, "0", "the own app's machine was not reached: {own}");
}
