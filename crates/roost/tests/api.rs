//! The Fly Machines API v1 surface end to end: a real `roost up` and real
//! OCI runtimes, driven over HTTP with the JSON shapes Fly clients send.

mod common;

use common::{base64, sh_config, Daemon, APP};
use reqwest::Method;
use roost_types::{CreateMachineRequest, MachineState, StopRequest};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A main process that records each boot in the rootfs, then sleeps.
const BOOTS: &str = "echo boot >> /root/boots; echo hello-from-main; exec sleep 1000";

fn machines(path: &str) -> String {
    format!("/v1/apps/{APP}/machines{path}")
}

fn machine(id: &str, path: &str) -> String {
    format!("/v1/apps/{APP}/machines/{id}{path}")
}

/// Creates a machine in `app` from a raw JSON request; returns the response.
async fn create_in(daemon: &Daemon, app: &str, body: Value) -> Value {
    let path = format!("/v1/apps/{app}/machines");
    let (status, created) = daemon.call(Method::POST, &path, Some(body.clone())).await;
    assert_eq!(status, 200, "create {body}: {created}\n{}", daemon.log());
    created
}

/// Creates a machine in [`APP`] from a raw JSON request and returns its id.
async fn create(daemon: &Daemon, body: Value) -> String {
    let created = create_in(daemon, APP, body).await;
    created["id"].as_str().expect("machine id").to_string()
}

async fn create_sh(daemon: &Daemon, script: &str) -> String {
    create_sh_with(daemon, script, json!({})).await
}

/// Creates a started machine running `script`, with the fields of `extra`
/// set in its config.
async fn create_sh_with(daemon: &Daemon, script: &str, extra: Value) -> String {
    let mut config = serde_json::to_value(sh_config(script)).unwrap();
    for (field, value) in extra.as_object().expect("config fields") {
        config[field] = value.clone();
    }
    create(daemon, json!({ "config": config })).await
}

async fn logs(daemon: &Daemon, id: &str) -> String {
    let response = daemon.client().logs(APP, id, false).await.expect("logs");
    response.text().await.expect("log text")
}

async fn boots(daemon: &Daemon, id: &str) -> usize {
    daemon
        .sh(id, "cat /root/boots")
        .await
        .stdout
        .lines()
        .count()
}

/// The number of boots recorded, once it is `expected` (the main process
/// writes it just after start) or after 3 s.
async fn boots_settled(daemon: &Daemon, id: &str, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let seen = boots(daemon, id).await;
        if seen == expected || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(daemon: &Daemon, path: &str, body: Value) -> Value {
    let (status, response) = daemon.call(Method::POST, path, Some(body)).await;
    assert!(
        (200..300).contains(&status),
        "POST {path}: {status} {response}"
    );
    response
}

async fn signal(daemon: &Daemon, id: &str, name: &str) {
    post(daemon, &machine(id, "/signal"), json!({ "signal": name })).await;
}

async fn get(daemon: &Daemon, path: &str) -> Value {
    let (status, response) = daemon.call(Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {response}");
    response
}

async fn event_kinds(daemon: &Daemon, id: &str) -> Vec<String> {
    daemon
        .client()
        .events(APP, id)
        .await
        .expect("events")
        .into_iter()
        .map(|e| format!("{}:{}", e.kind, e.status))
        .collect()
}

/// Polls `check` every 50 ms for up to `secs`, panicking with `what` after.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {secs}s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_valid_token_are_refused() {
    let daemon = Daemon::start().await;
    let cases = [
        (None, 401, Some("Authorization: Bearer")),
        (
            Some("Bearer not-the-token".to_string()),
            401,
            Some("not valid"),
        ),
        // Fly's own scheme is accepted too.
        (Some(format!("FlyV1 {}", daemon.token)), 200, None),
    ];
    for (authorization, status, error) in cases {
        let mut request = reqwest::Client::new().get(format!("{}/v1/apps", daemon.url));
        if let Some(authorization) = &authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{authorization:?}");
        let body: Value = response.json().await.unwrap();
        if let Some(error) = error {
            let message = body["error"].as_str().expect("JSON error");
            assert!(message.contains(error), "{message}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_create_list_show_and_delete_with_their_machines() {
    let daemon = Daemon::start().await;
    let (status, app) = daemon
        .call(
            Method::POST,
            "/v1/apps",
            Some(json!({"app_name": "robots", "org_slug": "lab"})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["name"], "robots");
    assert_eq!(app["organization"]["slug"], "lab");

    let shown = get(&daemon, "/v1/apps/robots").await;
    assert_eq!(shown["name"], "robots");
    let created = create_in(
        &daemon,
        "robots",
        json!({"config": sh_config("exec sleep 1000")}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();

    let listed = get(&daemon, "/v1/apps").await;
    assert_eq!(listed["total_apps"], 2, "{listed}");
    let robots = listed["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "robots")
        .expect("robots listed");
    assert_eq!(robots["machine_count"], 1);
    let by_org = get(&daemon, "/v1/apps?org_slug=lab").await;
    assert_eq!(by_org["total_apps"], 1, "{by_org}");

    let (status, _) = daemon.call(Method::DELETE, "/v1/apps/robots", None).await;
    assert_eq!(status, 202);
    let (status, body) = daemon.call(Method::GET, "/v1/apps/robots", None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("robots"));
    assert!(common::processes_mentioning(&id).is_empty());
    assert!(common::leftover_containers(&daemon.data_dir(), "crun").is_empty());
    assert!(common::mounts_under(&daemon.data_dir()).is_empty());
    assert!(!daemon.data_dir().join("machines").join(&id).exists());
    let listed = get(&daemon, "/v1/apps").await;
    assert_eq!(listed["total_apps"], 1, "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_launch_creates_without_a_process_then_start_runs_it() {
    let daemon = Daemon::start().await;
    let created = create_in(
        &daemon,
        APP,
        json!({
            "config": sh_config("exec sleep 1000"),
            "name": "builder-1",
            "region": "ams",
            "skip_launch": true,
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "created");
    assert_eq!(created["name"], "builder-1");
    assert_eq!(created["region"], "ams");
    assert!(common::processes_mentioning(&id).is_empty());
    assert!(common::leftover_containers(&daemon.data_dir(), "crun").is_empty());
    assert!(common::mounts_under(&daemon.data_dir()).is_empty());

    let started = post(&daemon, &machine(&id, "/start"), json!({})).await;
    assert_eq!(started["previous_state"], "created", "{started}");
    let shown = get(&daemon, &machine(&id, "")).await;
    assert_eq!(shown["state"], "started");
    assert_eq!(shown["name"], "builder-1");
    assert_eq!(shown["region"], "ams");
    assert_eq!(
        shown["config"]["init"]["cmd"][2], "exec sleep 1000",
        "{shown}"
    );
    assert_eq!(daemon.sh(&id, "hostname").await.stdout, format!("{id}\n"));
    let again = post(&daemon, &machine(&id, "/start"), json!({})).await;
    assert_eq!(again["previous_state"], "started");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_by_deleted_region_state_and_metadata() {
    let daemon = Daemon::start().await;
    let mut db = sh_config("exec sleep 1000");
    db.metadata.insert("role".into(), "db".into());
    let db = create(
        &daemon,
        json!({"config": db, "region": "ams", "skip_launch": true}),
    )
    .await;
    let mut web = sh_config("exec sleep 1000");
    web.metadata.insert("role".into(), "web".into());
    let web = create(&daemon, json!({"config": web})).await;
    let gone = create(
        &daemon,
        json!({"config": sh_config("exec sleep 1000"), "skip_launch": true}),
    )
    .await;
    daemon
        .client()
        .destroy_machine(APP, &gone, false)
        .await
        .expect("destroy created machine");

    let ids = |query: &'static str| {
        let daemon = &daemon;
        async move {
            let mut ids: Vec<String> = get(daemon, &machines(query))
                .await
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(ids("").await, sorted(vec![&db, &web]));
    assert_eq!(
        ids("?include_deleted=true").await,
        sorted(vec![&db, &web, &gone])
    );
    assert_eq!(ids("?region=ams").await, vec![db.clone()]);
    assert_eq!(ids("?state=started").await, vec![web.clone()]);
    assert_eq!(ids("?state=created,started").await, sorted(vec![&db, &web]));
    assert_eq!(
        ids("?state=destroyed&include_deleted=true").await,
        vec![gone.clone()]
    );
    assert_eq!(ids("?metadata.role=web").await, vec![web.clone()]);
    assert_eq!(ids("?metadata.role=db&region=ams").await, vec![db.clone()]);
    assert!(ids("?metadata.role=cache").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn update_replaces_the_config_and_keeps_the_rootfs_of_the_same_image() {
    let daemon = Daemon::start().await;
    let mut config = sh_config(BOOTS);
    config.env.insert("GREETING".into(), "one".into());
    let before = daemon
        .client()
        .create_machine(
            APP,
            &CreateMachineRequest {
                config: config.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let id = before.id.clone();
    daemon.sh(&id, "echo built > /root/work").await;

    config.env.insert("GREETING".into(), "two".into());
    let updated = post(
        &daemon,
        &machine(&id, ""),
        json!({"config": config, "current_version": before.instance_id}),
    )
    .await;
    assert_eq!(updated["state"], "started", "{updated}");
    let new_instance = updated["instance_id"].as_str().unwrap().to_string();
    assert_ne!(new_instance, before.instance_id);
    assert_eq!(updated["config"]["env"]["GREETING"], "two");

    // The new config is what runs: the main process was replaced.
    let main_env = daemon.sh(&id, "tr '\\0' '\\n' < /proc/1/environ").await;
    assert!(
        main_env.stdout.contains("GREETING=two"),
        "{}",
        main_env.stdout
    );
    assert!(main_env
        .stdout
        .contains(&format!("FLY_MACHINE_VERSION={new_instance}")));
    assert_eq!(daemon.sh(&id, "echo $GREETING").await.stdout, "two\n");
    // Same image: the rootfs is kept, and the machine booted twice in it.
    assert_eq!(daemon.sh(&id, "cat /root/work").await.stdout, "built\n");
    assert_eq!(boots_settled(&daemon, &id, 2).await, 2);

    let versions = get(&daemon, &machine(&id, "/versions")).await;
    let versions: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        vec![new_instance.as_str(), before.instance_id.as_str()]
    );
    assert!(event_kinds(&daemon, &id)
        .await
        .contains(&"update:started".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_the_rootfs() {
    let daemon = Daemon::start().await;
    let id = create_sh(&daemon, BOOTS).await;
    let instance = daemon.client().get_machine(APP, &id).await.unwrap();
    daemon.sh(&id, "echo kept > /root/state").await;
    post(&daemon, &machine(&id, "/restart"), json!({})).await;
    let after = daemon.client().get_machine(APP, &id).await.unwrap();
    assert_eq!(after.state, MachineState::Started);
    assert_eq!(after.instance_id, instance.instance_id);
    assert_eq!(daemon.sh(&id, "cat /root/state").await.stdout, "kept\n");
    assert_eq!(boots_settled(&daemon, &id, 2).await, 2);
    assert_eq!(
        event_kinds(&daemon, &id).await.first().map(String::as_str),
        Some("restart:started")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rootfs_persist_policies() {
    let daemon = Daemon::start().await;
    // (policy, boots seen after: create, restart, stop+start)
    for (persist, expected) in [
        (Some("never"), [1, 1, 1]),
        (Some("restart"), [1, 2, 1]),
        (None, [1, 2, 3]),
        (Some("always"), [1, 2, 3]),
    ] {
        let rootfs = match persist {
            Some(persist) => json!({"rootfs": { "persist": persist }}),
            None => json!({}),
        };
        let id = create_sh_with(&daemon, BOOTS, rootfs).await;
        let mut seen = [boots_settled(&daemon, &id, expected[0]).await, 0, 0];
        daemon.client().restart_machine(APP, &id).await.unwrap();
        seen[1] = boots_settled(&daemon, &id, expected[1]).await;
        daemon
            .client()
            .stop_machine(APP, &id, &StopRequest::default())
            .await
            .unwrap();
        daemon.client().start_machine(APP, &id).await.unwrap();
        seen[2] = boots_settled(&daemon, &id, expected[2]).await;
        assert_eq!(seen, expected, "rootfs.persist = {persist:?}");
        daemon
            .client()
            .destroy_machine(APP, &id, true)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_written_into_the_rootfs() {
    let daemon = Daemon::start().await;
    let files = json!({"files": [
        {"guest_path": "/etc/app/conf.toml", "raw_value": base64(b"port = 8080\n"), "mode": 0o600},
        {"guest_path": "/root/hello", "raw_value": base64(b"hi")},
    ]});
    let id = create_sh_with(&daemon, "exec sleep 1000", files).await;
    let out = daemon
        .sh(
            &id,
            "cat /etc/app/conf.toml; stat -c %a /etc/app/conf.toml; cat /root/hello",
        )
        .await;
    assert_eq!(out.stdout, "port = 8080\n600\nhi", "{out:?}");
    // Rewritten at every start: a change inside is replaced by the config's content.
    daemon.sh(&id, "echo changed > /root/hello").await;
    daemon.client().restart_machine(APP, &id).await.unwrap();
    assert_eq!(daemon.sh(&id, "cat /root/hello").await.stdout, "hi");
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_memory_and_cpus_are_enforced_and_visible_inside() {
    let daemon = Daemon::start().await;
    let mut config = sh_config("exec sleep 1000");
    config.guest = Some(roost_types::MachineGuest {
        cpus: Some(2),
        memory_mb: Some(96),
        ..Default::default()
    });
    let id = create(&daemon, json!({ "config": config })).await;
    let memory = daemon
        .sh(
            &id,
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        )
        .await;
    assert_eq!(
        memory.stdout.trim(),
        (96u64 << 20).to_string(),
        "{memory:?}"
    );
    let cpu = daemon
        .sh(
            &id,
            "q=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null) && p=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us) && echo \"$q $p\" || cat /sys/fs/cgroup/cpu.max",
        )
        .await;
    assert_eq!(cpu.stdout.trim(), "200000 100000", "{cpu:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_can_run_under_runc() {
    let daemon = Daemon::start().await;
    let mut config = sh_config(BOOTS);
    config.guest = Some(roost_types::MachineGuest {
        runtime: Some("runc".into()),
        ..Default::default()
    });
    let id = create(&daemon, json!({ "config": config })).await;
    assert_eq!(
        common::leftover_containers(&daemon.data_dir(), "runc"),
        vec![id.clone()]
    );
    assert!(common::leftover_containers(&daemon.data_dir(), "crun").is_empty());
    assert_eq!(daemon.sh(&id, "hostname").await.stdout, format!("{id}\n"));
    daemon.client().restart_machine(APP, &id).await.unwrap();
    assert_eq!(boots_settled(&daemon, &id, 2).await, 2);
    daemon
        .client()
        .destroy_machine(APP, &id, true)
        .await
        .unwrap();
    assert!(common::leftover_containers(&daemon.data_dir(), "runc").is_empty());
    assert!(common::mounts_under(&daemon.data_dir()).is_empty());
}

/// An update that changes `guest.runtime` stops the machine under its old
/// runtime, switches, and settles `started` under the new one; and back.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_switches_a_started_machine_to_another_runtime_and_back() {
    let daemon = Daemon::start().await;
    let id = create(&daemon, json!({ "config": sh_config(BOOTS) })).await;
    let containers = |runtime| common::leftover_containers(&daemon.data_dir(), runtime);
    assert_eq!(containers("crun"), vec![id.clone()]);
    for (runtime, other, boots) in [("runc", "crun", 2), ("crun", "runc", 3)] {
        let mut config = sh_config(BOOTS);
        config.guest = Some(roost_types::MachineGuest {
            runtime: Some(runtime.into()),
            ..Default::default()
        });
        let (status, updated) = daemon
            .call(
                Method::POST,
                &format!("/v1/apps/{APP}/machines/{id}"),
                Some(json!({ "config": config })),
            )
            .await;
        assert_eq!(
            status,
            200,
            "update to {runtime}: {updated}\n{}",
            daemon.log()
        );
        assert_eq!(updated["state"], "started", "{updated}");
        assert_eq!(daemon.state(&id).await, MachineState::Started);
        assert_eq!(containers(runtime), vec![id.clone()], "under {runtime}");
        assert!(
            containers(other).is_empty(),
            "{other} kept the old container"
        );
        assert_eq!(boots_settled(&daemon, &id, boots).await, boots);
        assert_eq!(daemon.sh(&id, "hostname").await.stdout, format!("{id}\n"));
    }
    daemon
        .client()
        .destroy_machine(APP, &id, true)
        .await
        .unwrap();
    assert!(containers("crun").is_empty() && containers("runc").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn signal_ends_the_main_process_and_the_restart_policy_decides() {
    let daemon = Daemon::start().await;
    // policy "no": the machine ends stopped.
    let no = json!({"restart": {"policy": "no"}});
    let stays_down = create_sh_with(&daemon, "exec sleep 1000", no).await;
    signal(&daemon, &stays_down, "SIGTERM").await;
    daemon.wait_state(&stays_down, "stopped", 10).await;
    assert!(common::processes_mentioning(&stays_down).is_empty());
    let kinds = event_kinds(&daemon, &stays_down).await;
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("exit:stopped"),
        "{kinds:?}"
    );

    // policy "always": the machine comes back started, in the same rootfs.
    let always = json!({"restart": {"policy": "always"}});
    let comes_back = create_sh_with(&daemon, BOOTS, always).await;
    signal(&daemon, &comes_back, "TERM").await;
    eventually(10, "machine restarted by policy always", || async {
        event_kinds(&daemon, &comes_back)
            .await
            .first()
            .map(String::as_str)
            == Some("restart:started")
    })
    .await;
    assert_eq!(daemon.state(&comes_back).await, MachineState::Started);
    assert_eq!(boots_settled(&daemon, &comes_back, 2).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_failure_retries_up_to_max_retries_then_stops() {
    let daemon = Daemon::start().await;
    let on_failure = json!({"restart": {"policy": "on-failure", "max_retries": 2}});
    let id = create_sh_with(&daemon, "echo attempt; exit 3", on_failure).await;
    daemon.wait_state(&id, "stopped", 20).await;
    let events = daemon.client().events(APP, &id).await.unwrap();
    let exits: Vec<&Value> = events
        .iter()
        .filter_map(|e| e.request.as_ref()?.get("exit_event"))
        .collect();
    assert_eq!(exits.len(), 3, "one run and two retries: {events:?}");
    assert!(exits.iter().all(|e| e["exit_code"] == 3), "{exits:?}");
    assert_eq!(exits[0]["restarting"], false);
    assert_eq!(exits[1]["restarting"], true);
    let logs = logs(&daemon, &id).await;
    assert_eq!(logs.matches("attempt").count(), 3, "{logs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_destroy_removes_the_machine_after_it_exits() {
    let daemon = Daemon::start().await;
    let once = json!({"auto_destroy": true, "restart": {"policy": "no"}});
    let id = create_sh_with(&daemon, "sleep 0.3; exit 0", once).await;
    daemon.wait_state(&id, "destroyed", 10).await;
    assert!(common::processes_mentioning(&id).is_empty());
    assert!(common::leftover_containers(&daemon.data_dir(), "crun").is_empty());
    assert!(common::mounts_under(&daemon.data_dir()).is_empty());
    assert!(!daemon.data_dir().join("machines").join(&id).exists());
    assert!(get(&daemon, &machines(""))
        .await
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_honours_signal_timeout_and_stop_config() {
    let daemon = Daemon::start().await;
    // Ignores SIGTERM: the stop's timeout ends in SIGKILL.
    let stubborn = "trap '' TERM; while true; do sleep 0.1; done";
    let id = create_sh(&daemon, stubborn).await;
    let begun = Instant::now();
    post(
        &daemon,
        &machine(&id, "/stop"),
        json!({"signal": "SIGTERM", "timeout": "1s"}),
    )
    .await;
    let took = begun.elapsed();
    assert_eq!(daemon.state(&id).await, MachineState::Stopped);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "stop took {took:?}"
    );
    assert!(common::processes_mentioning(&id).is_empty());

    // stop_config's timeout applies when the request names none.
    let id = create_sh_with(&daemon, stubborn, json!({"stop_config": {"timeout": 1}})).await;
    let begun = Instant::now();
    post(&daemon, &machine(&id, "/stop"), json!({})).await;
    let took = begun.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "stop took {took:?}"
    );

    // stop_config's signal is what the main process receives.
    let id = create_sh_with(
        &daemon,
        "trap 'echo got-usr1; exit 0' USR1; while true; do sleep 0.1; done",
        json!({"stop_config": {"signal": "SIGUSR1", "timeout": "10s"}}),
    )
    .await;
    let begun = Instant::now();
    daemon
        .client()
        .stop_machine(APP, &id, &StopRequest::default())
        .await
        .unwrap();
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "{:?}",
        begun.elapsed()
    );
    let logs = logs(&daemon, &id).await;
    assert!(logs.contains("got-usr1"), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_state_instance_and_timeout() {
    let daemon = Daemon::start().await;
    let id = create_sh(&daemon, "exec sleep 1000").await;
    let instance = daemon
        .client()
        .get_machine(APP, &id)
        .await
        .unwrap()
        .instance_id;
    get(&daemon, &machine(&id, "/wait?state=started&timeout=1")).await;
    get(
        &daemon,
        &machine(&id, &format!("/wait?state=started&instance_id={instance}")),
    )
    .await;

    let begun = Instant::now();
    let (status, body) = daemon
        .call(
            Method::GET,
            &machine(&id, "/wait?state=stopped&timeout=1"),
            None,
        )
        .await;
    assert_eq!(status, 408, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("stopped"),
        "{body}"
    );
    assert!(begun.elapsed() < Duration::from_secs(3));
    let (status, body) = daemon
        .call(
            Method::GET,
            &machine(
                &id,
                "/wait?state=started&timeout=1&instance_id=01ARZ3NDEKTSV4RRFFQ69G5FAV",
            ),
            None,
        )
        .await;
    assert_eq!(status, 408, "{body}");

    // A wait in flight returns once the machine gets there.
    for state in ["stopped", "destroyed"] {
        let waiter = {
            let client = daemon.client();
            let id = id.clone();
            tokio::spawn(async move { client.wait(APP, &id, state, 10).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "wait for {state} returned early");
        let client = daemon.client();
        match state {
            "stopped" => client.stop_machine(APP, &id, &StopRequest::default()).await,
            _ => client.destroy_machine(APP, &id, false).await,
        }
        .unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(10), waiter).await;
        waited.expect("wait returned").unwrap().expect(state);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_ordered_newest_first() {
    let daemon = Daemon::start().await;
    let no = json!({"restart": {"policy": "no"}});
    let id = create_sh_with(&daemon, "exec sleep 1000", no).await;
    let client = daemon.client();
    client
        .stop_machine(APP, &id, &StopRequest::default())
        .await
        .unwrap();
    client.start_machine(APP, &id).await.unwrap();
    signal(&daemon, &id, "SIGKILL").await;
    daemon.wait_state(&id, "stopped", 10).await;
    client.destroy_machine(APP, &id, false).await.unwrap();

    let events = client.events(APP, &id).await.unwrap();
    for pair in events.windows(2) {
        assert!(pair[0].timestamp >= pair[1].timestamp, "{events:?}");
    }
    let kinds: Vec<String> = events
        .iter()
        .map(|e| format!("{}:{}", e.kind, e.status))
        .collect();
    let position = |kind: &str| {
        kinds
            .iter()
            .position(|k| k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {kinds:?}"))
    };
    assert_eq!(position("destroy:destroyed"), 0, "{kinds:?}");
    assert!(position("destroy:destroyed") < position("exit:stopped"));
    assert!(position("exit:stopped") < position("start:started"));
    assert!(position("start:started") < position("stop:stopped"));
    assert!(position("stop:stopped") < position("launch:created"));
    assert_eq!(kinds.last().map(String::as_str), Some("launch:created"));
    let exit = events.iter().find(|e| e.kind == "exit").unwrap();
    assert_eq!(exit.source, "flyd");
    // The machine shows the same history.
    let shown = get(&daemon, &machine(&id, "")).await;
    assert_eq!(shown["events"].as_array().unwrap().len(), events.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_guard_mutations() {
    let daemon = Daemon::start().await;
    let id = create_sh(&daemon, "exec sleep 1000").await;
    let lease = post(
        &daemon,
        &machine(&id, "/lease"),
        json!({"ttl": 60, "description": "agent-7 deploying"}),
    )
    .await;
    let nonce = lease["nonce"].as_str().expect("nonce").to_string();
    assert_eq!(lease["data"]["nonce"], nonce.as_str());
    let shown = get(&daemon, &machine(&id, "/lease")).await;
    assert_eq!(shown["description"], "agent-7 deploying");

    let cordon = machine(&id, "/cordon");
    for presented in [None, Some("0123456789abcdef")] {
        let mut request = daemon.http(Method::POST, &cordon);
        if let Some(wrong) = presented {
            request = request.header("fly-machine-lease-nonce", wrong);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert!((400..500).contains(&status), "{status} {body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("leased by roost-admin")
                && message.contains("fly-machine-lease-nonce"),
            "{message}"
        );
    }
    assert!(
        !daemon
            .client()
            .get_machine(APP, &id)
            .await
            .unwrap()
            .cordoned
    );

    let response = daemon
        .http(Method::POST, &cordon)
        .header("fly-machine-lease-nonce", &nonce)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        daemon
            .client()
            .get_machine(APP, &id)
            .await
            .unwrap()
            .cordoned
    );

    let (status, body) = daemon
        .call(Method::POST, &machine(&id, "/lease"), Some(json!({})))
        .await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(
        body["error"].as_str().unwrap().contains("leased by"),
        "{body}"
    );

    let (status, _) = daemon
        .call(Method::DELETE, &machine(&id, "/lease"), None)
        .await;
    assert!(
        (400..500).contains(&status),
        "release without the nonce: {status}"
    );
    let response = daemon
        .http(Method::DELETE, &machine(&id, "/lease"))
        .header("fly-machine-lease-nonce", &nonce)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _) = daemon
        .call(Method::GET, &machine(&id, "/lease"), None)
        .await;
    assert_eq!(status, 404);
    post(&daemon, &machine(&id, "/uncordon"), json!({})).await;
    assert!(
        !daemon
            .client()
            .get_machine(APP, &id)
            .await
            .unwrap()
            .cordoned
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_at_create_returns_a_nonce() {
    let daemon = Daemon::start().await;
    let created = create_in(
        &daemon,
        APP,
        json!({"config": sh_config("exec sleep 1000"), "lease_ttl": 30, "skip_launch": true}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let nonce = created["nonce"].as_str().expect("nonce at create");
    let (status, _) = daemon
        .call(Method::POST, &machine(id, "/start"), None)
        .await;
    assert_eq!(status, 409);
    let response = daemon
        .http(Method::POST, &machine(id, "/start"))
        .header("fly-machine-lease-nonce", nonce)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_app_takes_its_leased_machines() {
    let daemon = Daemon::start().await;
    let client = daemon.client();
    client.create_app("leased-app").await.expect("create app");
    let created = create_in(
        &daemon,
        "leased-app",
        json!({"config": sh_config("exec sleep 1000"), "lease_ttl": 3600}),
    )
    .await;
    assert!(created["nonce"].as_str().is_some(), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, _) = daemon
        .call(
            Method::DELETE,
            &format!("/v1/apps/leased-app/machines/{id}?force=true"),
            None,
        )
        .await;
    assert_eq!(status, 409, "the lease still guards the machine itself");

    client
        .delete_app("leased-app")
        .await
        .unwrap_or_else(|e| panic!("delete the app: {e}\n{}", daemon.log()));
    let apps = client.list_apps().await.expect("list apps");
    assert!(
        apps.apps.iter().all(|app| app.name != "leased-app"),
        "{apps:?}"
    );
    let data = daemon.data_dir();
    for runtime in ["crun", "runc"] {
        assert_eq!(
            common::leftover_containers(&data, runtime),
            Vec::<String>::new()
        );
    }
    assert_eq!(
        common::mounts_under(&data),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_and_cordon() {
    let daemon = Daemon::start().await;
    let id = create(
        &daemon,
        json!({"config": sh_config("exec sleep 1000"), "skip_launch": true}),
    )
    .await;
    let (status, body) = daemon
        .call(
            Method::POST,
            &machine(&id, "/metadata/role"),
            Some(json!({"value": "db"})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        get(&daemon, &machine(&id, "/metadata")).await,
        json!({"role": "db"})
    );
    let shown = get(&daemon, &machine(&id, "")).await;
    assert_eq!(shown["config"]["metadata"]["role"], "db");
    assert_eq!(
        get(&daemon, &machines("?metadata.role=db")).await[0]["id"],
        id.as_str()
    );
    let (status, _) = daemon
        .call(Method::DELETE, &machine(&id, "/metadata/role"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(get(&daemon, &machine(&id, "/metadata")).await, json!({}));

    assert_eq!(shown["cordoned"], false);
    post(&daemon, &machine(&id, "/cordon"), json!({})).await;
    assert_eq!(get(&daemon, &machine(&id, "")).await["cordoned"], true);
    post(&daemon, &machine(&id, "/uncordon"), json!({})).await;
    assert_eq!(get(&daemon, &machine(&id, "")).await["cordoned"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn ps_lists_the_init_and_the_main_process() {
    let daemon = Daemon::start().await;
    let id = create_sh(&daemon, "exec sleep 1000").await;
    let processes = get(&daemon, &machine(&id, "/ps")).await;
    let processes = processes.as_array().unwrap();
    assert_eq!(processes[0]["pid"], 1, "{processes:?}");
    assert!(
        processes[0]["command"].as_str().unwrap().contains("init"),
        "{processes:?}"
    );
    assert!(
        processes
            .iter()
            .any(|p| p["command"].as_str().unwrap().contains("sleep 1000")),
        "{processes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_runs_cmd_strings_and_command_arrays_with_a_timeout() {
    let daemon = Daemon::start().await;
    let id = create_sh(&daemon, "exec sleep 1000").await;
    let out = post(
        &daemon,
        &machine(&id, "/exec"),
        json!({"cmd": "echo hi there"}),
    )
    .await;
    assert_eq!(out["stdout"], "hi there\n");
    assert_eq!(out["exit_code"], 0);
    let out = post(
        &daemon,
        &machine(&id, "/exec"),
        json!({"command": ["sh", "-c", "echo oops >&2; exit 7"]}),
    )
    .await;
    assert_eq!(out["stderr"], "oops\n");
    assert_eq!(out["exit_code"], 7);

    let begun = Instant::now();
    let (status, body) = daemon
        .call(
            Method::POST,
            &machine(&id, "/exec"),
            Some(json!({"command": ["sleep", "30"], "timeout": 1})),
        )
        .await;
    assert_eq!(status, 408, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "{:?}",
        begun.elapsed()
    );
    // The timed-out command was killed.
    eventually(5, "timed-out exec killed", || async {
        !daemon.sh(&id, "ps").await.stdout.contains("sleep 30")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_return_output_and_follow_streams_new_lines() {
    let daemon = Daemon::start().await;
    let id = create_sh(
        &daemon,
        "echo first-line; while [ ! -e /root/go ]; do sleep 0.1; done; echo line-after-request; exec sleep 1000",
    )
    .await;
    eventually(5, "first line logged", || async {
        logs(&daemon, &id).await.contains("first-line")
    })
    .await;
    let response = daemon
        .http(Method::GET, &machine(&id, "/logs"))
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(response.text().await.unwrap(), "first-line\n");

    let mut follow = daemon.client().logs(APP, &id, true).await.unwrap();
    let mut seen = String::new();
    daemon.sh(&id, "touch /root/go").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("line-after-request") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, follow.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("follow ended without the new line ({other:?}): {seen:?}"),
        }
    }
    assert!(seen.starts_with("first-line\n"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_round_trips_unknown_fields() {
    let daemon = Daemon::start().await;
    let mut config = serde_json::to_value(sh_config("exec sleep 1000")).unwrap();
    config["services"] = json!([{"internal_port": 8080, "protocol": "tcp"}]);
    let id = create(&daemon, json!({"config": config, "skip_launch": true})).await;
    let shown = get(&daemon, &machine(&id, "")).await;
    assert_eq!(shown["config"]["services"][0]["internal_port"], 8080);
}

/// What the binary mounts beside the Machines API on its listener (the MCP
/// server, the tokenizer's key) sits behind the same token check, and a
/// path nothing serves still gets the API's JSON 404.
#[tokio::test(flavor = "multi_thread")]
async fn routes_mounted_beside_the_api_need_the_token_too() {
    let daemon = Daemon::start().await;
    for (method, path) in [
        (Method::GET, "/v1/tokenizer/public-key"),
        (Method::POST, "/mcp"),
    ] {
        let anonymous = reqwest::Client::new()
            .request(method, format!("{}{path}", daemon.url))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
        let body: Value = anonymous.json().await.unwrap();
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains("Authorization: Bearer"), "{path}: {body}");
    }
    let (status, key) = daemon
        .call(Method::GET, "/v1/tokenizer/public-key", None)
        .await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["public_key"].as_str().map(str::len), Some(64), "{key}");
    let (status, missing) = daemon.call(Method::GET, "/v1/nothing-here", None).await;
    assert_eq!(status, 404, "{missing}");
    assert!(
        missing["error"]
            .as_str()
            .is_some_and(|e| e.contains("no such endpoint")),
        "{missing}"
    );
}

/// flaude, a real Fly client, updates a machine with `PUT` where Fly's
/// spec says `POST`; both are the same update.
#[tokio::test(flavor = "multi_thread")]
async fn put_updates_a_machine_as_post_does() {
    let daemon = Daemon::start().await;
    let id = create_sh(&daemon, BOOTS).await;
    let before = get(&daemon, &machine(&id, "")).await;
    let mut config = serde_json::to_value(sh_config(BOOTS)).unwrap();
    config["env"] = json!({"UPDATED_BY": "put"});
    let (status, updated) = daemon
        .call(
            Method::PUT,
            &machine(&id, ""),
            Some(json!({"config": config, "current_version": before["instance_id"]})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["state"], "started", "{updated}");
    assert_eq!(updated["config"]["env"]["UPDATED_BY"], "put");
    assert_ne!(updated["instance_id"], before["instance_id"]);
    assert_eq!(daemon.sh(&id, "echo $UPDATED_BY").await.stdout, "put\n");
    assert_eq!(boots_settled(&daemon, &id, 2).await, 2);
    assert!(event_kinds(&daemon, &id)
        .await
        .contains(&"update:started".to_string()));
    // A refused PUT is refused as a POST is.
    let (status, refused) = daemon
        .call(Method::PUT, &machine(&id, ""), Some(json!({"config": {}})))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("config.image is required")),
        "{refused}"
    );
}

/// Sends `body` as `curl -d` does: JSON text under
/// `Content-Type: application/x-www-form-urlencoded`. Returns the status
/// and the JSON answer (`null` when there is none).
async fn form(daemon: &Daemon, method: Method, path: &str, body: Value) -> (u16, Value) {
    let response = daemon
        .http(method, path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("roost reachable");
    let status = response.status().as_u16();
    let text = response.text().await.expect("response body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Every route that takes a JSON body reads it whatever `Content-Type` the
/// client sent, so plain `curl -d` works.
#[tokio::test(flavor = "multi_thread")]
async fn json_bodies_are_read_whatever_their_content_type() {
    let scratch = tempfile::tempdir().unwrap();
    let registry = roost_testkit::registry::Registry::start(scratch.path());
    let busybox = roost_testkit::busybox_layout(scratch.path());
    registry.push(&busybox, "latest", "busybox", "latest", &[]);
    let daemon = Daemon::start_with_args(&["--insecure-registry", &registry.addr]).await;
    let sends = |method: Method, path: String, body: Value, expected: u16| {
        let daemon = &daemon;
        async move {
            let (status, answer) = form(daemon, method.clone(), &path, body).await;
            assert_eq!(status, expected, "{method} {path}: {answer}");
            answer
        }
    };
    sends(
        Method::POST,
        "/v1/apps".into(),
        json!({"app_name": "curled"}),
        201,
    )
    .await;
    let layout = busybox.to_string_lossy().into_owned();
    let image = json!({"path": layout, "name": "curled:latest"});
    sends(Method::POST, "/v1/images".into(), image, 201).await;
    let pull = json!({"image": format!("{}/busybox:latest", registry.addr)});
    sends(Method::POST, "/v1/images/pull".into(), pull, 201).await;

    let mut config = serde_json::to_value(sh_config("trap '' HUP; exec sleep 1000")).unwrap();
    let created = sends(Method::POST, machines(""), json!({"config": config}), 200).await;
    let id = created["id"].as_str().expect("machine id").to_string();
    config["env"] = json!({"CURLED": "yes"});
    sends(
        Method::POST,
        machine(&id, ""),
        json!({"config": config}),
        200,
    )
    .await;
    let metadata = json!({"value": "web"});
    sends(Method::POST, machine(&id, "/metadata/role"), metadata, 204).await;
    let exec = json!({"command": ["sh", "-c", "echo $CURLED"]});
    let ran = sends(Method::POST, machine(&id, "/exec"), exec, 200).await;
    assert_eq!(ran["stdout"], "yes\n", "{ran}");
    let signal = json!({"signal": "SIGHUP"});
    sends(Method::POST, machine(&id, "/signal"), signal, 200).await;
    let lease = sends(
        Method::POST,
        machine(&id, "/lease"),
        json!({"ttl": 30}),
        200,
    )
    .await;
    assert!(lease["data"]["nonce"].is_string(), "{lease}");
    let released = daemon
        .http(Method::DELETE, &machine(&id, "/lease"))
        .header(
            "fly-machine-lease-nonce",
            lease["data"]["nonce"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 200);
    sends(
        Method::POST,
        machine(&id, "/stop"),
        json!({"timeout": "2s"}),
        200,
    )
    .await;

    let secrets = format!("/v1/apps/{APP}/secrets");
    let values = json!({"values": {"A_SECRET": "one"}});
    sends(Method::POST, secrets.clone(), values, 200).await;
    let value = json!({"value": "two"});
    sends(Method::POST, format!("{secrets}/B_SECRET"), value, 200).await;

    let volumes = format!("/v1/apps/{APP}/volumes");
    let volume = json!({"name": "curled", "size_gb": 1});
    let volume = sends(Method::POST, volumes.clone(), volume, 200).await;
    let volume = format!("{volumes}/{}", volume["id"].as_str().expect("volume id"));
    let retention = json!({"snapshot_retention": 3});
    sends(Method::POST, volume.clone(), retention, 200).await;
    let size = json!({"size_gb": 2});
    sends(Method::PUT, format!("{volume}/extend"), size, 200).await;

    let bucket = json!({"name": "curled-bucket"});
    sends(Method::POST, format!("/v1/apps/{APP}/storage"), bucket, 200).await;
}
