//! Scoped API tokens end to end, through the real CLI and the HTTP API:
//! the admin token is a token like the others, narrower tokens are
//! created, attenuated offline, enforced on every call, listed without
//! the token and revoked with what was derived from them; an old data
//! dir's admin token keeps working.

mod common;

use common::{sh_config, stdout_of, Daemon, APP};
use reqwest::Method;
use roost_types::{CreateMachineRequest, MachineState};
use serde_json::Value;

/// `roost ARGS --json` with `token` (the admin token's when `None`), parsed.
fn cli_json(daemon: &Daemon, token: Option<&str>, args: &[&str]) -> Value {
    let mut command = daemon.cli(&[&["--json"], args].concat());
    if let Some(token) = token {
        command.env("ROOST_API_TOKEN", token);
    }
    serde_json::from_str(&stdout_of(&mut command)).expect("JSON output")
}

/// A raw request with `token`: its status and JSON body.
async fn call(daemon: &Daemon, token: &str, method: Method, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", daemon.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("roost reachable");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn started_machine(daemon: &Daemon) -> String {
    let machine = daemon
        .client()
        .create_machine(
            APP,
            &CreateMachineRequest {
                config: sh_config("exec sleep 1000"),
                ..Default::default()
            },
        )
        .await
        .expect("create machine");
    daemon.wait_state(&machine.id, "started", 30).await;
    machine.id
}

#[tokio::test(flavor = "multi_thread")]
async fn scoped_tokens_are_enforced_listed_attenuated_and_revoked() {
    let daemon = Daemon::start().await;
    // The admin token is a token of the same kind: it can be attenuated.
    assert!(!daemon.token.chars().all(|c| c.is_ascii_hexdigit()));
    daemon
        .client()
        .create_app("other")
        .await
        .expect("other app");
    let id = started_machine(&daemon).await;

    let created = cli_json(
        &daemon,
        None,
        &[
            "tokens",
            "create",
            "--app",
            APP,
            "--rights",
            "read",
            "--expires",
            "1h",
        ],
    );
    let (read_id, read_only) = (
        created["id"].as_str().expect("id").to_string(),
        created["token"].as_str().expect("token").to_string(),
    );

    // A read-only token reads its app but cannot stop its machine, which
    // stays started; the refusal names the right and the machine.
    let (status, _) = call(
        &daemon,
        &read_only,
        Method::GET,
        &format!("/v1/apps/{APP}/machines"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &daemon,
        &read_only,
        Method::POST,
        &format!("/v1/apps/{APP}/machines/{id}/stop"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let error = body["error"].as_str().expect("error text");
    assert!(
        error.contains("'lifecycle'") && error.contains(&id),
        "{error}"
    );
    assert!(!error.contains(&read_only));
    assert_eq!(daemon.state(&id).await, MachineState::Started);

    // It cannot see another app, nor list every app.
    for path in ["/v1/apps/other", "/v1/apps/other/machines", "/v1/apps"] {
        let (status, body) = call(&daemon, &read_only, Method::GET, path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("'read'"), "{body}");
    }

    // Nor manage tokens, which needs the `tokens` right.
    let (status, body) = call(&daemon, &read_only, Method::GET, "/v1/tokens").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("'tokens'"),
        "{body}"
    );

    // Attenuated offline, it cannot widen: asking for lifecycle changes
    // nothing, and the server accepts what it narrows.
    let wider = cli_json(
        &daemon,
        None,
        &[
            "tokens",
            "attenuate",
            &read_only,
            "--rights",
            "read,lifecycle",
        ],
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let stop = format!("/v1/apps/{APP}/machines/{id}/stop");
    assert_eq!(call(&daemon, &wider, Method::POST, &stop).await.0, 403);
    let (status, _) = call(
        &daemon,
        &wider,
        Method::GET,
        &format!("/v1/apps/{APP}/machines/{id}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(daemon.state(&id).await, MachineState::Started);

    // The admin token attenuated offline to read and exec on the app.
    let robot = cli_json(
        &daemon,
        None,
        &[
            "tokens",
            "attenuate",
            &daemon.token,
            "--app",
            APP,
            "--rights",
            "read,exec",
            "--expires",
            "1h",
        ],
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = cli_json(&daemon, Some(&robot), &["machine", "list", "--app", APP]);
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    let ran = cli_json(
        &daemon,
        Some(&robot),
        &["machine", "exec", "--app", APP, &id, "--", "echo", "hi"],
    );
    assert_eq!(ran["stdout"], "hi\n", "{ran}");
    let (status, _) = call(&daemon, &robot, Method::POST, &stop).await;
    assert_eq!(status, 403);

    // Listing shows ids and caveats, never a token.
    let tokens = cli_json(&daemon, None, &["tokens", "list"]);
    let text = tokens.to_string();
    assert!(text.contains(&read_id), "{text}");
    assert_eq!(
        tokens["tokens"][0]["caveats"]["apps"],
        serde_json::json!([APP])
    );
    assert_eq!(
        tokens["tokens"][0]["caveats"]["rights"],
        serde_json::json!(["read"])
    );
    assert!(!text.contains(&read_only) && !text.contains(&daemon.token));

    // Revoking it revokes what was derived from it, and nothing else.
    cli_json(&daemon, None, &["tokens", "revoke", &read_id]);
    for token in [&read_only, &wider] {
        let (status, body) = call(&daemon, token, Method::GET, &format!("/v1/apps/{APP}")).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("revoked"),
            "{body}"
        );
    }
    assert_eq!(
        call(&daemon, &robot, Method::GET, &format!("/v1/apps/{APP}"))
            .await
            .0,
        200
    );
    let left = cli_json(&daemon, None, &["tokens", "list"]);
    assert_eq!(left["tokens"], serde_json::json!([]));

    // No token reached the log.
    let log = daemon.log();
    for token in [&read_only, &wider, &robot, &daemon.token] {
        assert!(!log.contains(token.as_str()), "a token is in roost's log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_token_never_exceeds_its_creator() {
    let daemon = Daemon::start().await;
    let id = started_machine(&daemon).await;
    let manager = cli_json(
        &daemon,
        None,
        &["tokens", "create", "--app", APP, "--rights", "read,tokens"],
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Not for the whole roost, which is beyond its app.
    let mut beyond = daemon.cli(&["tokens", "create", "--rights", "read"]);
    let out = beyond.env("ROOST_API_TOKEN", &manager).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'tokens'"));
    // For its app it may, asking for more than it has; what it gets still
    // cannot stop the machine, nor reach beyond the app.
    let asked = cli_json(
        &daemon,
        Some(&manager),
        &[
            "tokens",
            "create",
            "--app",
            APP,
            "--rights",
            "read,lifecycle",
        ],
    );
    let child = asked["token"].as_str().unwrap();
    let stop = format!("/v1/apps/{APP}/machines/{id}/stop");
    let (status, body) = call(&daemon, child, Method::POST, &stop).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(call(&daemon, child, Method::GET, "/v1/apps").await.0, 403);
    assert_eq!(daemon.state(&id).await, MachineState::Started);
    // A bad caveat is the request's fault.
    let (status, body) = {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/tokens", daemon.url))
            .bearer_auth(&daemon.token)
            .json(&serde_json::json!({"rights": ["root"]}))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("'root'"), "{body}");
    // An expired token is refused as a whole.
    let expired = roost_tokens_attenuate_expired(&daemon);
    let (status, body) = call(&daemon, &expired, Method::GET, &format!("/v1/apps/{APP}")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

/// The admin token attenuated with an expiry already past (`--expires 0s`
/// is now; a second later it has passed).
fn roost_tokens_attenuate_expired(daemon: &Daemon) -> String {
    let token = cli_json(
        daemon,
        None,
        &["tokens", "attenuate", &daemon.token, "--expires", "0s"],
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    token
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_data_dirs_admin_token_still_authenticates() {
    let mut daemon = Daemon::start().await;
    daemon.kill();
    // The data dir of a roost from before tokens: a random hex admin token.
    let old = "0123456789abcdef".repeat(4);
    let data = daemon.data_dir();
    for file in ["admin-token.legacy", "root-key", "tokens.json"] {
        let _ = std::fs::remove_file(data.join(file));
    }
    std::fs::write(data.join("admin-token"), format!("{old}\n")).unwrap();
    daemon.spawn(None).await;
    // The file now holds a new admin token; the old one is still the admin.
    assert_ne!(daemon.token, old);
    let (status, body) = call(&daemon, &old, Method::GET, &format!("/v1/apps/{APP}")).await;
    assert_eq!(status, 200, "{body}");
    let created = cli_json(
        &daemon,
        Some(&old),
        &["tokens", "create", "--rights", "read"],
    );
    assert!(created["token"].is_string(), "{created}");
    // And again after another restart, with nothing more to migrate.
    daemon.kill();
    daemon.spawn(None).await;
    assert_eq!(call(&daemon, &old, Method::GET, "/v1/apps").await.0, 200);
    assert_eq!(
        call(&daemon, "0".repeat(64).as_str(), Method::GET, "/v1/apps")
            .await
            .0,
        401
    );
}
