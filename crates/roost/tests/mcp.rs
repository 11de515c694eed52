//! roost's MCP server driven by real third-party MCP clients against a real
//! daemon: the official Python SDK (`pip install mcp`, over Streamable HTTP
//! in both the session and the stateless protocol eras, and over stdio
//! through `roost mcp`) and the MCP Inspector's CLI (npm
//! `@modelcontextprotocol/inspector`). `.ci/run` installs both.

mod common;

use common::{Daemon, APP, IMAGE};
use reqwest::header::{HeaderMap, HeaderValue};
use std::path::Path;
use std::process::Command;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../mcp/tests/client.py");

/// Runs a scenario of `client.py`; panics with its output (and the
/// daemon's log) unless it succeeds. Returns its stdout.
fn python(daemon: &Daemon, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(CLIENT)
        .args(args)
        .output()
        .expect("python3 runs (install the client with `pip install mcp`; see .ci/run)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client.py {args:?} failed:\n{stdout}\n{}\n--- roost log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    stdout
}

/// Runs the MCP Inspector CLI against the daemon's `/mcp` and parses its JSON output.
fn inspector(daemon: &Daemon, args: &[&str]) -> serde_json::Value {
    let out = Command::new("mcp-inspector")
        .args([
            "--cli",
            &format!("{}/mcp", daemon.url),
            "--transport",
            "http",
        ])
        .args(args)
        .args([
            "--header",
            &format!("Authorization: Bearer {}", daemon.token),
        ])
        .output()
        .expect("mcp-inspector runs (npm install -g @modelcontextprotocol/inspector; see .ci/run)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mcp-inspector {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("inspector output {stdout}: {e}"))
}

fn assert_nothing_left(daemon: &Daemon) {
    let mounts = common::mounts_under(&daemon.data_dir());
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    for runtime in ["crun", "runc"] {
        let left = common::leftover_containers(&daemon.data_dir(), runtime);
        assert!(left.is_empty(), "{runtime} containers left: {left:?}");
    }
    let loops = common::loop_devices_under(&daemon.data_dir());
    assert!(loops.is_empty(), "loop devices left behind: {loops:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_drives_machines_over_streamable_http() {
    let daemon = Daemon::start().await;
    for mode in ["legacy", "2026-07-28"] {
        let out = python(
            &daemon,
            &["http", &daemon.url, &daemon.token, APP, IMAGE, mode],
        );
        assert!(out.ends_with("OK\n"), "{out}");
    }
    assert_nothing_left(&daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_over_stdio_through_roost_mcp() {
    let daemon = Daemon::start().await;
    python(
        &daemon,
        &[
            "stdio",
            env!("CARGO_BIN_EXE_roost"),
            &daemon.url,
            &daemon.token,
            APP,
            IMAGE,
        ],
    );
    assert_nothing_left(&daemon);
}

/// The volume tools on a volume a machine mounts: write, snapshot, grow
/// online, restore, destroy; refused input (size 0, shrinking, an unknown
/// volume, destroying a mounted one) gives tool errors.
#[tokio::test(flavor = "multi_thread")]
async fn python_client_manages_volumes() {
    let daemon = Daemon::start().await;
    // The tool answers, for a reader: `-- --nocapture`.
    println!(
        "{}",
        python(
            &daemon,
            &["volumes", &daemon.url, &daemon.token, APP, IMAGE]
        )
    );
    assert_nothing_left(&daemon);
}

/// The secret tools: machines get secrets at their next start, and neither
/// an answer nor an error (even of malformed arguments) holds a value.
#[tokio::test(flavor = "multi_thread")]
async fn python_client_manages_secrets_without_seeing_values() {
    let daemon = Daemon::start().await;
    // The tool answers, for a reader: `-- --nocapture`.
    println!(
        "{}",
        python(
            &daemon,
            &["secrets", &daemon.url, &daemon.token, APP, IMAGE]
        )
    );
    assert_nothing_left(&daemon);
}

/// The egress tools: a new app's policy is the daemon's default, set_egress
/// replaces it normalized or refuses a bad pattern by index, and machines
/// get the proxy variables.
#[tokio::test(flavor = "multi_thread")]
async fn python_client_manages_egress_policies() {
    let daemon = Daemon::start().await;
    println!(
        "{}",
        python(&daemon, &["egress", &daemon.url, &daemon.token, APP, IMAGE])
    );
    assert_nothing_left(&daemon);
}

/// A read-only token for the app: tools/list shows only the reading
/// tools, and a tool needing another right is refused naming it, the
/// machine still started after the refused stop.
#[tokio::test(flavor = "multi_thread")]
async fn python_client_with_a_read_only_token_sees_and_does_only_reads() {
    let daemon = Daemon::start().await;
    let machine = daemon
        .client()
        .create_machine(
            APP,
            &roost_types::CreateMachineRequest {
                config: common::sh_config("exec sleep 1000"),
                ..Default::default()
            },
        )
        .await
        .expect("create machine");
    daemon.wait_state(&machine.id, "started", 30).await;
    let created = daemon
        .client()
        .create_token(&roost_types::TokenCaveats {
            apps: Some(vec![APP.into()]),
            rights: Some(vec!["read".into()]),
            ..Default::default()
        })
        .await
        .expect("create token");
    python(
        &daemon,
        &["scoped", &daemon.url, &created.token, APP, &machine.id],
    );
    assert_eq!(
        daemon.state(&machine.id).await,
        roost_types::MachineState::Started
    );
}

/// Every file under `dir`, with its content.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| (e.path(), std::fs::read(e.path()).expect("read file")))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tool_input_is_a_tool_error_and_touches_nothing_outside() {
    let daemon = Daemon::start().await;
    let outside = daemon.dir.path().join("host");
    std::fs::create_dir(&outside).unwrap();
    let secret = outside.join("secret");
    std::fs::write(&secret, "host secret").unwrap();
    let before = (snapshot(&outside), std::fs::read("/etc/shadow").ok());
    python(
        &daemon,
        &[
            "bad",
            &daemon.url,
            &daemon.token,
            APP,
            IMAGE,
            &secret.to_string_lossy(),
        ],
    );
    assert_eq!(
        (snapshot(&outside), std::fs::read("/etc/shadow").ok()),
        before
    );
    assert_nothing_left(&daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn inspector_cli_lists_and_calls_tools() {
    let daemon = Daemon::start().await;
    let listed = inspector(&daemon, &["--method", "tools/list"]);
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tool in [
        "run_machine",
        "exec",
        "read_file",
        "write_file",
        "list_dir",
        "create_volume",
        "set_secrets",
    ] {
        assert!(names.contains(&tool), "{tool} missing from {names:?}");
    }
    let called = inspector(
        &daemon,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "list_machines",
            "--tool-arg",
            &format!("app={APP}"),
        ],
    );
    assert_eq!(called["isError"], false, "{called}");
    assert_eq!(
        called["structuredContent"]["machines"],
        serde_json::json!([])
    );
}

fn mcp_post(
    daemon: &Daemon,
    headers: HeaderMap,
    body: serde_json::Value,
) -> reqwest::RequestBuilder {
    daemon
        .http(reqwest::Method::POST, "/mcp")
        .headers(headers)
        .header("Accept", "application/json, text/event-stream")
        .json(&body)
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_endpoint_checks_token_host_origin_and_sessions() {
    let daemon = Daemon::start().await;
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}},
    });
    let anonymous = reqwest::Client::new()
        .post(format!("{}/mcp", daemon.url))
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // DNS rebinding and cross-site requests name another host or origin.
    for (name, value) in [
        ("Host", "attacker.example:80"),
        ("Origin", "http://attacker.example"),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        let refused = mcp_post(&daemon, headers, init.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{name}: {value}");
    }
    let mut same_origin = HeaderMap::new();
    same_origin.insert("Origin", HeaderValue::from_str(&daemon.url).unwrap());
    let response = mcp_post(&daemon, same_origin, init).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"].clone();
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("\"protocolVersion\":\"2025-03-26\""));

    let mut in_session = HeaderMap::new();
    in_session.insert("Mcp-Session-Id", session);
    let closed = daemon
        .http(reqwest::Method::DELETE, "/mcp")
        .headers(in_session.clone())
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success(), "{}", closed.status());
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let stale = mcp_post(&daemon, in_session, list).send().await.unwrap();
    assert_eq!(stale.status(), 404);
}

/// MCP vs plain HTTP API round trips; run with
/// `cargo test -p roost --test mcp -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn mcp_vs_http_round_trips() {
    let daemon = Daemon::start().await;
    let table = python(
        &daemon,
        &["bench", &daemon.url, &daemon.token, APP, IMAGE, "300"],
    );
    println!("{table}");
}

/// `pull_image` fetches from a real registry (Debian's docker-registry on
/// loopback) and `run_machine` runs what it pulled.
#[tokio::test(flavor = "multi_thread")]
async fn python_client_pulls_an_image_and_runs_it() {
    use roost_testkit::layer::LayerBuilder;
    use roost_testkit::oci::{self, ImageSpec};

    let scratch = tempfile::tempdir().expect("tempdir");
    let registry = roost_testkit::registry::Registry::start(scratch.path());
    let mut marker = LayerBuilder::new();
    marker.file("etc/hostname-source", 0o644, b"pulled\n");
    let layout = scratch.path().join("pulled-oci");
    let manifest = oci::write_image(
        &layout,
        &ImageSpec {
            config: serde_json::json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]}),
            layers: vec![roost_testkit::busybox_layer(), marker.into_tar()],
            gzip: true,
            docker: false,
        },
    );
    oci::write_index(&layout, vec![manifest.tagged("mcp")]);
    registry.push(&layout, "mcp", "pulled", "mcp", &[]);

    let daemon = Daemon::start_with_args(&["--insecure-registry", &registry.addr]).await;
    let image = format!("{}/pulled:mcp", registry.addr);
    python(&daemon, &["pull", &daemon.url, &daemon.token, APP, &image]);
    assert_nothing_left(&daemon);
}
