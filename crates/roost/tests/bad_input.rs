//! Bad input end to end: every refused request gets the right 4xx and a JSON
//! `{"error": ...}` that names the problem and what is allowed, and leaves
//! the platform exactly as it was (records, containers, mounts, files).

mod common;

use common::{base64, sh_config, Daemon, APP};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Everything a refused request must leave untouched.
#[derive(Debug, PartialEq)]
struct World {
    apps: Value,
    /// Per machine: id, state, instance id, name, region, cordoned,
    /// metadata, config and the number of events.
    machines: Vec<Value>,
    leases: Vec<(String, u16)>,
    containers: Vec<String>,
    mounts: Vec<PathBuf>,
    machine_dirs: Vec<String>,
}

impl World {
    async fn of(daemon: &Daemon) -> World {
        let (_, apps) = daemon.call(Method::GET, "/v1/apps", None).await;
        let mut machines = Vec::new();
        let mut leases = Vec::new();
        for app in apps["apps"].as_array().expect("apps") {
            let name = app["name"].as_str().unwrap();
            let path = format!("/v1/apps/{name}/machines?include_deleted=true");
            let (status, listed) = daemon.call(Method::GET, &path, None).await;
            assert_eq!(status, 200, "{listed}");
            for m in listed.as_array().unwrap() {
                let id = m["id"].as_str().unwrap();
                let lease = format!("/v1/apps/{name}/machines/{id}/lease");
                let (lease_status, _) = daemon.call(Method::GET, &lease, None).await;
                leases.push((id.to_string(), lease_status));
                machines.push(json!({
                    "id": m["id"], "state": m["state"], "instance_id": m["instance_id"],
                    "name": m["name"], "region": m["region"], "cordoned": m["cordoned"],
                    "config": m["config"], "events": m["events"].as_array().map(Vec::len),
                }));
            }
        }
        machines.sort_by_key(|m| m["id"].as_str().map(String::from));
        let data = daemon.data_dir();
        let mut containers = common::leftover_containers(&data, "crun");
        containers.extend(common::leftover_containers(&data, "runc"));
        containers.sort();
        let mut mounts = common::mounts_under(&data);
        mounts.sort();
        let mut machine_dirs: Vec<String> = std::fs::read_dir(data.join("machines"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        machine_dirs.sort();
        World {
            apps,
            machines,
            leases,
            containers,
            mounts,
            machine_dirs,
        }
    }
}

/// The world as it was before the refused requests of a test.
struct Baseline<'a> {
    daemon: &'a Daemon,
    world: World,
}

impl Baseline<'_> {
    async fn of(daemon: &Daemon) -> Baseline<'_> {
        Baseline {
            daemon,
            world: World::of(daemon).await,
        }
    }
}

/// Sends `request`, expects `status` with a JSON error mentioning every
/// needle, and checks that the world is still `baseline`. Returns the error
/// message.
async fn refused(
    baseline: &Baseline<'_>,
    request: RequestBuilder,
    status: u16,
    needles: &[&str],
) -> String {
    let response = request.send().await.expect("roost reachable");
    let got = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("error body is not JSON ({got}): {text:?}"));
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error string: {text}"))
        .to_string();
    assert_eq!(got, status, "{message}");
    // The service's words suit every front end: the CLI and MCP add their own advice.
    assert!(
        !message.contains("`roost ") && !message.contains("roost up --"),
        "error {message:?} names a CLI command"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "error {message:?} does not mention {needle:?}"
        );
    }
    let after = World::of(baseline.daemon).await;
    assert_eq!(
        after, baseline.world,
        "a refused request changed state: {message}"
    );
    message
}

fn machines_path(app: &str) -> String {
    format!("/v1/apps/{app}/machines")
}

fn machine(id: &str, path: &str) -> String {
    format!("/v1/apps/{APP}/machines/{id}{path}")
}

fn create_with(daemon: &Daemon, config: Value) -> RequestBuilder {
    daemon
        .http(Method::POST, &machines_path(APP))
        .json(&json!({ "config": config }))
}

fn config() -> Value {
    serde_json::to_value(sh_config("exec sleep 1000")).unwrap()
}

/// A started, a stopped and a destroyed machine.
async fn fleet(daemon: &Daemon) -> (String, String, String) {
    let client = daemon.client();
    let request = roost_types::CreateMachineRequest {
        config: sh_config("exec sleep 1000"),
        ..Default::default()
    };
    let started = client.create_machine(APP, &request).await.unwrap().id;
    let stopped = client.create_machine(APP, &request).await.unwrap().id;
    client
        .stop_machine(APP, &stopped, &Default::default())
        .await
        .unwrap();
    let destroyed = client.create_machine(APP, &request).await.unwrap().id;
    client.destroy_machine(APP, &destroyed, true).await.unwrap();
    (started, stopped, destroyed)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_refuses_bad_configs() {
    let daemon = Daemon::start().await;
    fleet(&daemon).await;
    let baseline = Baseline::of(&daemon).await;
    refused(
        &baseline,
        daemon
            .http(Method::POST, &machines_path("nope"))
            .json(&json!({ "config": config() })),
        404,
        &["app 'nope' not found"],
    )
    .await;

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = config();
        f(&mut c);
        c
    };
    let cases: Vec<(Value, u16, Vec<&str>)> = vec![
        (
            with(&|c| c["image"] = json!("nothere:latest")),
            400,
            vec!["nothere:latest", "busybox:latest"],
        ),
        (
            with(&|c| c["image"] = json!("")),
            400,
            vec!["config.image is required"],
        ),
        (
            with(&|c| c["image"] = json!("Bad Ref!")),
            400,
            vec!["Bad Ref!"],
        ),
        (
            with(&|c| c["guest"] = json!({"memory_mb": 0})),
            400,
            vec!["config.guest.memory_mb = 0", "allowed values are 32 to"],
        ),
        (
            with(&|c| c["guest"] = json!({"memory_mb": 1u64 << 40})),
            400,
            vec!["config.guest.memory_mb", "allowed values are 32 to"],
        ),
        (
            with(&|c| c["guest"] = json!({"cpus": 0})),
            400,
            vec![
                "config.guest.cpus = 0",
                "allowed values are whole numbers from 1 to",
            ],
        ),
        (
            with(&|c| c["guest"] = json!({"cpus": 4096})),
            400,
            vec!["config.guest.cpus = 4096", "CPU count"],
        ),
        (
            with(&|c| c["guest"] = json!({"runtime": "youki"})),
            400,
            vec!["youki", "crun, runc"],
        ),
        (
            with(&|c| c["stop_config"] = json!({"signal": "SIGNOPE"})),
            400,
            vec!["SIGNOPE", "SIGTERM"],
        ),
        (
            with(&|c| c["stop_config"] = json!({"timeout": "soon"})),
            400,
            vec!["config.stop_config.timeout", "30s"],
        ),
        (
            with(&|c| c["files"] = json!([{"guest_path": "etc/motd", "raw_value": base64(b"x")}])),
            400,
            vec!["config.files[0].guest_path", "absolute"],
        ),
        (
            with(&|c| {
                c["files"] =
                    json!([{"guest_path": "/etc/../../../etc/passwd", "raw_value": base64(b"x")}])
            }),
            400,
            vec!["config.files[0].guest_path", "'..'"],
        ),
        (
            with(&|c| {
                c["files"] = json!([{"guest_path": "/etc/motd", "raw_value": "%%% not base64"}])
            }),
            400,
            vec!["config.files[0].raw_value", "base64"],
        ),
        (
            with(&|c| c["files"] = json!([{"guest_path": "/etc/motd"}])),
            400,
            vec!["config.files[0]", "raw_value"],
        ),
        (
            with(&|c| c["restart"] = json!({"policy": "sometimes"})),
            400,
            vec!["sometimes", "on-failure"],
        ),
        (
            with(&|c| c["env"] = json!({"A=B": "x"})),
            400,
            vec!["config.env", "'='"],
        ),
    ];
    for (config, status, needles) in cases {
        refused(&baseline, create_with(&daemon, config), status, &needles).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_incomplete_bodies_are_refused() {
    let daemon = Daemon::start().await;
    let (started, _, _) = fleet(&daemon).await;
    let baseline = Baseline::of(&daemon).await;
    let create = machines_path(APP);
    let cases: [(&str, &str, &[&str]); 9] = [
        (&create, r#"{"config": {"image": "#, &["invalid JSON body"]),
        (&create, "{}", &["missing field `config`"]),
        (&create, r#"{"config": {"image": 5}}"#, &["image", "string"]),
        ("/v1/apps", "{}", &["missing field `app_name`"]),
        (
            &machine(&started, "/signal"),
            "{}",
            &["missing field `signal`"],
        ),
        (
            &machine(&started, "/metadata/role"),
            "{}",
            &["missing field `value`"],
        ),
        (
            &machine(&started, "/stop"),
            "{not json",
            &["invalid JSON body"],
        ),
        (&machine(&started, "/exec"), "{}", &["`command`", "`cmd`"]),
        (
            &machine(&started, ""),
            r#"{"config": {}}"#,
            &["config.image is required"],
        ),
    ];
    // The body is read as JSON whatever its content type says (`curl -d`
    // sends a form type), so the answer is the same under each.
    let content_types = [
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
        None,
    ];
    for (path, body, needles) in cases {
        for content_type in content_types {
            let mut request = daemon.http(Method::POST, path).body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            refused(&baseline, request, 400, needles).await;
        }
    }
}

/// A request to `path` with an optional JSON body.
fn request(daemon: &Daemon, method: Method, path: &str, body: Option<Value>) -> RequestBuilder {
    let request = daemon.http(method, path);
    match body {
        Some(body) => request.json(&body),
        None => request,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_machine_ids_are_refused() {
    let daemon = Daemon::start().await;
    fleet(&daemon).await;
    let baseline = Baseline::of(&daemon).await;
    let ids = [
        "..%2Fetc",
        "..%2F..%2Fetc%2Fpasswd",
        "ABCDEF01234567",
        "abc",
        "0123456789abcdef",
    ];
    for id in ids {
        for (method, path, body) in [
            (Method::GET, "", None),
            (Method::DELETE, "?force=true", None),
            (Method::POST, "/start", None),
            (Method::POST, "/stop", None),
            (Method::GET, "/wait?state=stopped&timeout=1", None),
            (Method::POST, "/lease", None),
            (Method::POST, "/exec", Some(json!({"cmd": "true"}))),
        ] {
            let request = request(&daemon, method, &machine(id, path), body);
            refused(&baseline, request, 400, &["14 lowercase hex characters"]).await;
        }
    }
    refused(
        &baseline,
        daemon.http(Method::GET, &machine("0123456789abcd", "")),
        404,
        &["0123456789abcd not found"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_lease_nonce_changes_nothing() {
    let daemon = Daemon::start().await;
    let (started, _, _) = fleet(&daemon).await;
    let (status, lease) = daemon
        .call(
            Method::POST,
            &machine(&started, "/lease"),
            Some(json!({"ttl": 120})),
        )
        .await;
    assert_eq!(status, 200, "{lease}");
    let baseline = Baseline::of(&daemon).await;
    let mut update = config();
    update["env"] = json!({"CHANGED": "1"});
    let held = ["leased by roost-admin", "fly-machine-lease-nonce"];
    for nonce in [Some("ffffffffffffffffffffffffffffffff"), None] {
        for (method, path, body) in [
            (Method::POST, "/stop", None),
            (Method::POST, "/restart", None),
            (Method::DELETE, "?force=true", None),
            (Method::POST, "/cordon", None),
            (Method::DELETE, "/lease", None),
            (Method::POST, "/lease", None),
            (Method::POST, "/signal", Some(json!({"signal": "SIGKILL"}))),
            (Method::POST, "/metadata/role", Some(json!({"value": "x"}))),
            (Method::POST, "", Some(json!({ "config": update }))),
        ] {
            let mut request = request(&daemon, method, &machine(&started, path), body);
            if let Some(nonce) = nonce {
                request = request.header("fly-machine-lease-nonce", nonce);
            }
            refused(&baseline, request, 409, &held).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn illegal_transitions_are_refused() {
    let daemon = Daemon::start().await;
    let (started, stopped, destroyed) = fleet(&daemon).await;
    let baseline = Baseline::of(&daemon).await;
    let exec = Some(json!({"cmd": "true"}));
    let cases: [(Method, String, Option<Value>, &[&str]); 9] = [
        (
            Method::POST,
            machine(&destroyed, "/start"),
            None,
            &["destroyed", "create a new machine"],
        ),
        (
            Method::DELETE,
            machine(&destroyed, "?force=true"),
            None,
            &["destroyed", "create a new machine"],
        ),
        (
            Method::POST,
            machine(&destroyed, ""),
            Some(json!({ "config": config() })),
            &["destroyed", "create a new machine"],
        ),
        (
            Method::POST,
            machine(&destroyed, "/metadata/role"),
            Some(json!({"value": "x"})),
            &["destroyed", "create a new machine"],
        ),
        (
            Method::POST,
            machine(&stopped, "/exec"),
            exec,
            &["is stopped", "start it first"],
        ),
        (
            Method::GET,
            machine(&stopped, "/ps"),
            None,
            &["is stopped", "start it first"],
        ),
        (
            Method::POST,
            machine(&stopped, "/signal"),
            Some(json!({"signal": "SIGTERM"})),
            &["is stopped", "start it first"],
        ),
        (
            Method::POST,
            machine(&stopped, "/restart"),
            None,
            &["is stopped", "use start"],
        ),
        (
            Method::DELETE,
            machine(&started, ""),
            None,
            &["is started", "force=true"],
        ),
    ];
    for (method, path, body, needles) in cases {
        refused(
            &baseline,
            request(&daemon, method, &path, body),
            409,
            needles,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signals_states_and_timeouts_are_refused() {
    let daemon = Daemon::start().await;
    let (started, _, _) = fleet(&daemon).await;
    let baseline = Baseline::of(&daemon).await;
    let on = |path: &str| machine(&started, path);
    let wait = |query: &str| on(&format!("/wait?{query}"));
    let list = |query: &str| format!("{}?{query}", machines_path(APP));
    let exec = |timeout: i64| Some(json!({"cmd": "true", "timeout": timeout}));
    let lease = |ttl: u64| Some(json!({ "ttl": ttl }));
    let signal = |name: &str| Some(json!({ "signal": name }));
    let unknown_signal: &[&str] = &["unknown signal", "SIGTERM"];
    let wait_range: &[&str] = &["timeout", "1 to 300 seconds"];
    let wait_format: &[&str] = &["timeout", "use seconds"];
    let cases: Vec<(Method, String, Option<Value>, &[&str])> = vec![
        (
            Method::POST,
            on("/signal"),
            signal("SIGNOPE"),
            unknown_signal,
        ),
        (Method::POST, on("/signal"), signal("99"), unknown_signal),
        (Method::POST, on("/signal"), signal(""), unknown_signal),
        (
            Method::POST,
            on("/stop"),
            signal("SIGNOPE"),
            &["SIGNOPE", "SIGTERM"],
        ),
        (
            Method::POST,
            on("/stop"),
            Some(json!({"timeout": "soon"})),
            &["soon", "30s"],
        ),
        (
            Method::POST,
            on("/restart?signal=NOPE"),
            None,
            &["NOPE", "SIGTERM"],
        ),
        (
            Method::GET,
            wait("state=running"),
            None,
            &["running", "allowed: created"],
        ),
        (
            Method::GET,
            wait("state=starting"),
            None,
            &[
                "starting",
                "allowed values are started, stopped, suspended, destroyed",
            ],
        ),
        (
            Method::GET,
            wait("state=stopped&timeout=abc"),
            None,
            wait_format,
        ),
        (
            Method::GET,
            wait("state=stopped&timeout=-5"),
            None,
            wait_format,
        ),
        (
            Method::GET,
            wait("state=stopped&timeout="),
            None,
            wait_format,
        ),
        (
            Method::GET,
            wait("state=stopped&timeout=0"),
            None,
            wait_range,
        ),
        (
            Method::GET,
            wait("state=stopped&timeout=100000"),
            None,
            wait_range,
        ),
        (Method::POST, on("/exec"), exec(0), wait_range),
        (Method::POST, on("/exec"), exec(100_000), wait_range),
        (Method::POST, on("/exec"), exec(-1), &["timeout"]),
        (
            Method::POST,
            on("/lease"),
            lease(0),
            &["ttl", "1 to 3600 seconds"],
        ),
        (
            Method::POST,
            on("/lease"),
            lease(1_000_000),
            &["ttl", "1 to 3600 seconds"],
        ),
        (
            Method::GET,
            list("state=running"),
            None,
            &["running", "allowed: created"],
        ),
        (
            Method::GET,
            list("colour=blue"),
            None,
            &["colour", "include_deleted, region, state, metadata.KEY"],
        ),
        (
            Method::GET,
            list("include_deleted=maybe"),
            None,
            &["true or false"],
        ),
        (
            Method::DELETE,
            on("?force=maybe"),
            None,
            &["force", "true or false"],
        ),
        (
            Method::GET,
            on("/logs?follow=maybe"),
            None,
            &["follow", "true or false"],
        ),
    ];
    for (method, path, body, needles) in cases {
        refused(
            &baseline,
            request(&daemon, method, &path, body),
            400,
            needles,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn update_with_a_bad_config_changes_nothing() {
    let daemon = Daemon::start().await;
    let (started, stopped, _) = fleet(&daemon).await;
    let baseline = Baseline::of(&daemon).await;
    for id in [&started, &stopped] {
        let update = |f: &dyn Fn(&mut Value)| {
            let mut c = config();
            f(&mut c);
            daemon
                .http(Method::POST, &machine(id, ""))
                .json(&json!({ "config": c }))
        };
        refused(
            &baseline,
            update(&|c| c["image"] = json!("nothere:latest")),
            400,
            &["nothere:latest", "busybox:latest"],
        )
        .await;
        refused(
            &baseline,
            update(&|c| c["guest"] = json!({"memory_mb": 0})),
            400,
            &["memory_mb", "allowed values"],
        )
        .await;
        refused(
            &baseline,
            update(&|c| c["guest"] = json!({"runtime": "kata"})),
            400,
            &["kata", "crun, runc"],
        )
        .await;
        refused(
            &baseline,
            daemon.http(Method::POST, &machine(id, "")).json(
                &json!({"config": config(), "current_version": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
            ),
            409,
            &["01ARZ3NDEKTSV4RRFFQ69G5FAV", "re-read"],
        )
        .await;
    }
    let (status, versions) = daemon
        .call(Method::GET, &machine(&started, "/versions"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_app_names_and_unknown_apps_are_refused() {
    let daemon = Daemon::start().await;
    fleet(&daemon).await;
    let baseline = Baseline::of(&daemon).await;
    let too_long = "a".repeat(64);
    for name in [
        "Bad_Name",
        "-lead",
        "trail-",
        "",
        "has space",
        "ünï",
        too_long.as_str(),
    ] {
        refused(
            &baseline,
            daemon
                .http(Method::POST, "/v1/apps")
                .json(&json!({ "app_name": name })),
            400,
            &["is invalid", "1-63 lowercase letters, digits and '-'"],
        )
        .await;
    }
    refused(
        &baseline,
        daemon
            .http(Method::POST, "/v1/apps")
            .json(&json!({ "app_name": APP })),
        409,
        &[APP],
    )
    .await;
    for (method, path) in [
        (Method::GET, "/v1/apps/nope"),
        (Method::DELETE, "/v1/apps/nope"),
        (Method::GET, "/v1/apps/nope/machines"),
        (Method::GET, "/v1/apps/nope/machines/0123456789abcd"),
    ] {
        refused(
            &baseline,
            daemon.http(method, path),
            404,
            &["app 'nope' not found"],
        )
        .await;
    }
    // What is missing comes as data, for clients to phrase their own advice.
    let body: Value = daemon
        .http(Method::GET, "/v1/apps/nope/machines")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["missing"], json!({"kind": "app", "app": "nope"}));
    refused(
        &baseline,
        daemon.http(Method::GET, "/v1/nothing/here"),
        404,
        &["no such endpoint", "/v1/apps"],
    )
    .await;
}

/// Found by the schema fuzzer: exec of a program the machine does not have
/// was a 500 whose message was the runtime's command line (host paths and
/// all), and the machine could not be destroyed afterwards. It is the
/// request's fault: a 400 naming the program, under either runtime, and
/// nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn exec_of_a_missing_program_is_refused() {
    let daemon = Daemon::start().await;
    let mut ids = Vec::new();
    for runtime in ["crun", "runc"] {
        let mut config = sh_config("exec sleep 1000");
        config.guest = Some(roost_types::MachineGuest {
            runtime: Some(runtime.into()),
            ..Default::default()
        });
        let request = roost_types::CreateMachineRequest {
            config,
            ..Default::default()
        };
        ids.push(
            daemon
                .client()
                .create_machine(APP, &request)
                .await
                .unwrap()
                .id,
        );
    }
    let baseline = Baseline::of(&daemon).await;
    let data_dir = daemon.data_dir().to_string_lossy().into_owned();
    for id in &ids {
        for body in [
            json!({"command": ["no-such-program", "arg"]}),
            json!({"cmd": "/no/such/path"}),
        ] {
            let program = body["command"][0]
                .as_str()
                .or(body["cmd"].as_str())
                .unwrap()
                .to_string();
            let request = daemon.http(Method::POST, &machine(id, "/exec")).json(&body);
            let message = refused(
                &baseline,
                request,
                400,
                &["could not be started in the machine", &program],
            )
            .await;
            assert!(!message.contains(&data_dir), "{message}");
        }
        // The machine still runs commands it has.
        let out = daemon.sh(id, "echo still here").await;
        assert_eq!(out.stdout.trim(), "still here", "{out:?}");
    }
    // And it can still be destroyed: the process the runtime forked into
    // it for the failed exec died as roost's orphan, and left unreaped it
    // kept the machine's init from ever exiting (a 500 after 10 s).
    for id in &ids {
        daemon
            .client()
            .destroy_machine(APP, id, true)
            .await
            .unwrap_or_else(|e| panic!("destroy {id} after failed execs: {e}"));
    }
}
