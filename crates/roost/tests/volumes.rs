//! Volumes end to end on a real `roost up`: data outlives machines, grows
//! online, comes back from snapshots and forks; bad input changes nothing;
//! fsynced data survives kills; machines keep their volumes across crashes.
//! (Crashes at every step of the volume operations themselves are in
//! `crash_recovery.rs`, with the machines'.)

mod common;

use common::{Daemon, APP};
use reqwest::Method;
use roost_lifecycle::{Intent, Step, StepName, Transition, Update};
use roost_types::{
    CreateMachineRequest, CreateVolumeRequest, MachineMount, MachineRestart, MachineState,
    RestartPolicy, UpdateMachineRequest, Volume,
};
use serde_json::json;

async fn create_volume(daemon: &Daemon, req: CreateVolumeRequest) -> Volume {
    daemon
        .client()
        .create_volume(APP, &req)
        .await
        .unwrap_or_else(|e| panic!("create volume {req:?}: {e}\n{}", daemon.log()))
}

fn named(name: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: Some(name.into()),
        size_gb: Some(1),
        ..Default::default()
    }
}

fn config_with_volume(volume: &str) -> roost_types::MachineConfig {
    let mut config = common::sh_config("sleep 1000");
    config.mounts = vec![MachineMount {
        volume: volume.into(),
        path: "/data".into(),
        ..Default::default()
    }];
    config.restart = Some(MachineRestart {
        policy: RestartPolicy::No,
        max_retries: None,
    });
    config
}

/// Starts a machine that mounts `volume` at /data and returns its id.
async fn machine_with(daemon: &Daemon, volume: &str) -> String {
    let req = CreateMachineRequest {
        config: config_with_volume(volume),
        ..Default::default()
    };
    daemon
        .client()
        .create_machine(APP, &req)
        .await
        .unwrap_or_else(|e| panic!("create machine on {volume}: {e}\n{}", daemon.log()))
        .id
}

/// Runs `script` in machine `id` and returns its stdout, failing on a non-zero exit.
async fn run(daemon: &Daemon, id: &str, script: &str) -> String {
    let out = daemon.sh(id, script).await;
    assert_eq!(
        out.exit_code,
        0,
        "{script}: {} {}\n{}",
        out.stdout,
        out.stderr,
        daemon.log()
    );
    out.stdout
}

/// Size of /data inside machine `id`, in KiB, as `df` shows it.
async fn df_kib(daemon: &Daemon, id: &str) -> u64 {
    let out = run(daemon, id, "df -k /data | tail -n 1").await;
    out.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected df output {out:?}"))
}

/// Writes `text` to /data/note and fsyncs it.
async fn write_note(daemon: &Daemon, id: &str, text: &str) {
    run(
        daemon,
        id,
        &format!("echo {text} > /data/note.tmp && mv /data/note.tmp /data/note && sync"),
    )
    .await;
}

async fn destroy_machine(daemon: &Daemon, id: &str) {
    daemon
        .client()
        .destroy_machine(APP, id, true)
        .await
        .expect("destroy machine");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_outlives_its_machine_and_one_machine_holds_a_volume() {
    let daemon = Daemon::start().await;
    let volume = create_volume(&daemon, named("data")).await;
    assert!(
        volume.id.starts_with("vol_") && volume.id.len() == 20,
        "{}",
        volume.id
    );
    assert_eq!(volume.state, "created");
    assert!(volume.blocks > 0 && volume.block_size == 4096, "{volume:?}");
    let first = machine_with(&daemon, &volume.id).await;
    let kib = df_kib(&daemon, &first).await;
    assert!(kib > 900 * 1024 && kib <= 1024 * 1024, "df shows {kib} KiB");
    write_note(&daemon, &first, "hello").await;
    let shown = daemon
        .client()
        .get_volume(APP, &volume.id)
        .await
        .expect("show");
    assert_eq!(shown.attached_machine_id.as_deref(), Some(first.as_str()));

    let (status, body) = daemon
        .call(
            Method::POST,
            &format!("/v1/apps/{APP}/machines"),
            Some(json!({"config": config_with_volume(&volume.id)})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains(&first)),
        "{body}"
    );
    let (status, body) = daemon
        .call(
            Method::DELETE,
            &format!("/v1/apps/{APP}/volumes/{}", volume.id),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains(&first)),
        "{body}"
    );

    daemon
        .client()
        .stop_machine(APP, &first, &Default::default())
        .await
        .expect("stop");
    daemon
        .client()
        .start_machine(APP, &first)
        .await
        .expect("start");
    assert_eq!(run(&daemon, &first, "cat /data/note").await, "hello\n");
    destroy_machine(&daemon, &first).await;
    let shown = daemon
        .client()
        .get_volume(APP, &volume.id)
        .await
        .expect("show");
    assert_eq!(shown.attached_machine_id, None);

    let second = machine_with(&daemon, &volume.id).await;
    assert_eq!(run(&daemon, &second, "cat /data/note").await, "hello\n");
    destroy_machine(&daemon, &second).await;
    let gone = daemon
        .client()
        .destroy_volume(APP, &volume.id)
        .await
        .expect("destroy volume");
    assert_eq!(gone.state, "destroyed");
    assert!(daemon
        .client()
        .list_volumes(APP)
        .await
        .expect("list")
        .is_empty());
    assert!(common::loop_devices_under(&daemon.data_dir()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mounted_volume_grows_online() {
    let daemon = Daemon::start().await;
    let volume = create_volume(&daemon, named("grow")).await;
    let id = machine_with(&daemon, &volume.id).await;
    write_note(&daemon, &id, "before").await;
    let before = df_kib(&daemon, &id).await;
    let response = daemon
        .client()
        .extend_volume(APP, &volume.id, 3)
        .await
        .expect("extend");
    assert_eq!(response.volume.size_gb, 3);
    let after = df_kib(&daemon, &id).await;
    if response.needs_restart {
        daemon
            .client()
            .restart_machine(APP, &id)
            .await
            .expect("restart");
        assert!(df_kib(&daemon, &id).await > 2 * before);
    } else {
        assert!(after > 2 * before, "df {before} -> {after} KiB");
    }
    assert_eq!(run(&daemon, &id, "cat /data/note").await, "before\n");
    let (status, body) = daemon
        .call(
            Method::PUT,
            &format!("/v1/apps/{APP}/volumes/{}/extend", volume.id),
            Some(json!({"size_gb": 2})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("only grow")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_restore_old_data_and_forks_diverge() {
    let daemon = Daemon::start().await;
    let volume = create_volume(&daemon, named("origin")).await;
    let id = machine_with(&daemon, &volume.id).await;
    write_note(&daemon, &id, "old").await;
    run(
        &daemon,
        &id,
        "dd if=/dev/urandom of=/data/blob bs=1M count=8 2>/dev/null && sync",
    )
    .await;
    let blob_sum = run(&daemon, &id, "md5sum /data/blob | cut -d' ' -f1").await;
    let snapshot = daemon
        .client()
        .create_volume_snapshot(APP, &volume.id)
        .await
        .expect("snapshot while the machine writes");
    assert!(snapshot.id.starts_with("vs_") && snapshot.digest.starts_with("sha256:"));
    assert!(snapshot.size > 8 << 20, "{snapshot:?}");
    write_note(&daemon, &id, "new").await;
    let listed = daemon
        .client()
        .list_volume_snapshots(APP, &volume.id)
        .await
        .expect("list snapshots");
    assert_eq!(listed.len(), 1);

    let restored = create_volume(
        &daemon,
        CreateVolumeRequest {
            name: Some("restored".into()),
            size_gb: Some(2),
            snapshot_id: Some(snapshot.id.clone()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(restored.size_gb, 2);
    let reader = machine_with(&daemon, &restored.id).await;
    assert_eq!(run(&daemon, &reader, "cat /data/note").await, "old\n");
    assert_eq!(
        run(&daemon, &reader, "md5sum /data/blob | cut -d' ' -f1").await,
        blob_sum
    );
    assert!(df_kib(&daemon, &reader).await > 1536 * 1024);

    let fork = create_volume(
        &daemon,
        CreateVolumeRequest {
            name: Some("fork".into()),
            source_volume_id: Some(volume.id.clone()),
            ..Default::default()
        },
    )
    .await;
    let forked = machine_with(&daemon, &fork.id).await;
    assert_eq!(run(&daemon, &forked, "cat /data/note").await, "new\n");
    write_note(&daemon, &forked, "fork").await;
    write_note(&daemon, &id, "origin").await;
    assert_eq!(run(&daemon, &forked, "cat /data/note").await, "fork\n");
    assert_eq!(run(&daemon, &id, "cat /data/note").await, "origin\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_volume_input_is_refused_and_changes_nothing() {
    let daemon = Daemon::start().await;
    let volume = create_volume(&daemon, named("keep")).await;
    let holder = machine_with(&daemon, &volume.id).await;
    let missing = "vol_0000000000000000";
    let volumes = format!("/v1/apps/{APP}/volumes");
    let machines = format!("/v1/apps/{APP}/machines");
    let mount = |path: &str| {
        json!({"config": {"image": common::IMAGE, "init": {"cmd": ["sleep", "1"]},
            "mounts": [{"volume": volume.id, "path": path}]}})
    };
    let cases: Vec<(Method, String, serde_json::Value, u16, &str)> = vec![
        (
            Method::POST,
            volumes.clone(),
            json!({"name": "z", "size_gb": 0}),
            400,
            "size_gb = 0",
        ),
        (
            Method::POST,
            volumes.clone(),
            json!({"name": "z", "size_gb": 100000}),
            400,
            "host's limit",
        ),
        (
            Method::POST,
            volumes.clone(),
            json!({"name": "Bad-Name"}),
            400,
            "name",
        ),
        (
            Method::POST,
            volumes.clone(),
            json!({"name": "z", "snapshot_id": "vs_nope"}),
            400,
            "snapshot_id",
        ),
        (
            Method::POST,
            volumes.clone(),
            json!({"name": "z", "source_volume_id": missing}),
            400,
            "source_volume_id",
        ),
        (
            Method::POST,
            volumes.clone(),
            json!({"name": "z", "snapshot_retention": 0}),
            400,
            "snapshot_retention",
        ),
        (
            Method::POST,
            volumes.clone(),
            json!({"name": "z", "fstype": "ntfs"}),
            400,
            "fstype",
        ),
        (
            Method::PUT,
            format!("{volumes}/{}/extend", volume.id),
            json!({"size_gb": 1}),
            400,
            "only grow",
        ),
        (
            Method::PUT,
            format!("{volumes}/{missing}/extend"),
            json!({"size_gb": 2}),
            404,
            missing,
        ),
        (
            Method::DELETE,
            format!("{volumes}/{}", volume.id),
            serde_json::Value::Null,
            409,
            holder.as_str(),
        ),
        (
            Method::GET,
            format!("{volumes}/not-an-id"),
            serde_json::Value::Null,
            400,
            "invalid",
        ),
        (
            Method::POST,
            machines.clone(),
            mount("data"),
            400,
            "absolute",
        ),
        (Method::POST, machines.clone(), mount("/"), 400, "\"/\""),
        (
            Method::POST,
            machines.clone(),
            mount("/proc/x"),
            400,
            "/proc",
        ),
        (Method::POST, machines.clone(), mount("/etc"), 400, "/etc"),
        (
            Method::POST,
            machines.clone(),
            mount("/data"),
            409,
            holder.as_str(),
        ),
        (
            Method::POST,
            machines.clone(),
            json!({"config": {"image": common::IMAGE, "mounts": [{"volume": missing, "path": "/data"}]}}),
            400,
            missing,
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let body = (!body.is_null()).then_some(body);
        let (got, answer) = daemon.call(method.clone(), &path, body.clone()).await;
        assert_eq!(got, status, "{method} {path} {body:?}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(needle),
            "{method} {path}: {error:?} should name {needle:?}"
        );
    }
    let listed = daemon.client().list_volumes(APP).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].size_gb, 1);
    assert_eq!(
        daemon
            .client()
            .list_machines(APP)
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(
        common::loop_devices_under(&daemon.data_dir().join("volumes")).len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fsynced_data_survives_kills_and_snapshots_hold_it() {
    let mut daemon = Daemon::start().await;
    let volume = create_volume(&daemon, named("durable")).await;
    let id = machine_with(&daemon, &volume.id).await;
    run(
        &daemon,
        &id,
        "echo fsynced > /data/f && dd if=/data/f of=/data/g conv=fsync 2>/dev/null",
    )
    .await;

    daemon.kill();
    daemon.spawn(None).await;
    assert_eq!(run(&daemon, &id, "cat /data/g").await, "fsynced\n");

    let snapshot = daemon
        .client()
        .create_volume_snapshot(APP, &volume.id)
        .await
        .expect("snapshot");
    daemon
        .client()
        .post::<serde_json::Value>(
            &format!("/v1/apps/{APP}/machines/{id}/signal"),
            &json!({"signal": "SIGKILL"}),
        )
        .await
        .expect("kill the machine");
    daemon.wait_state(&id, "stopped", 30).await;
    // The machine's rootfs disk stays attached; its volume's must not.
    let left = common::loop_devices_left_under(&daemon.data_dir().join("volumes"), 10).await;
    assert!(left.is_empty(), "loop devices outlived the stop: {left:?}");
    daemon
        .client()
        .start_machine(APP, &id)
        .await
        .expect("start");
    assert_eq!(run(&daemon, &id, "cat /data/g").await, "fsynced\n");

    let copy = create_volume(
        &daemon,
        CreateVolumeRequest {
            name: Some("copy".into()),
            snapshot_id: Some(snapshot.id),
            ..Default::default()
        },
    )
    .await;
    let reader = machine_with(&daemon, &copy.id).await;
    assert_eq!(run(&daemon, &reader, "cat /data/g").await, "fsynced\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn machines_attach_and_detach_volumes_across_crashes() {
    let mut daemon = Daemon::start().await;
    let volume = create_volume(&daemon, named("steps")).await;
    let id = machine_with(&daemon, &volume.id).await;
    write_note(&daemon, &id, "kept").await;
    // The volume steps of the operations that move the machine, as the
    // lifecycle model plans them.
    let config = config_with_volume(&volume.id);
    let update = Intent::update(
        &config,
        Update {
            persist: Default::default(),
            image_changed: false,
            switch_runtime: None,
            skip_launch: false,
        },
    );
    let mut points = Vec::new();
    for (state, intent) in [
        (MachineState::Started, Intent::Stop),
        (MachineState::Stopped, Intent::start(&config)),
        (MachineState::Started, update),
    ] {
        let Ok(Transition::Run(plan)) = roost_lifecycle::transition(state, &intent) else {
            panic!("{intent:?} from {state} plans nothing");
        };
        for step in &plan.steps {
            if matches!(step, Step::AttachVolumes | Step::DetachVolumes) {
                points.push((
                    format!("{}:{}", plan.kind.name(), step.name()),
                    plan.settle.as_str(),
                ));
            }
        }
    }
    assert_eq!(points.len(), 4, "{points:?}");
    for (point, settles) in points.iter().map(|(p, s)| (p.as_str(), *s)) {
        daemon.kill();
        daemon.spawn(Some(point)).await;
        let client = daemon.client();
        let result = match point {
            "stop:detach_volumes" => client
                .stop_machine(APP, &id, &Default::default())
                .await
                .map(|_| ()),
            "start:attach_volumes" => client.start_machine(APP, &id).await.map(|_| ()),
            _ => {
                let mut config = config_with_volume(&volume.id);
                config.env.insert("V".into(), point.into());
                client
                    .post::<serde_json::Value>(
                        &format!("/v1/apps/{APP}/machines/{id}"),
                        &UpdateMachineRequest {
                            config,
                            ..Default::default()
                        },
                    )
                    .await
                    .map(|_| ())
            }
        };
        assert!(result.is_err(), "{point}: roost should have died");
        assert!(!daemon.wait_exit().success(), "{point}");
        daemon.spawn(None).await;
        daemon.wait_state(&id, settles, 30).await;
        daemon.check_no_volume_leaks(point).await;
        if settles == "started" {
            assert_eq!(
                run(&daemon, &id, "cat /data/note").await,
                "kept\n",
                "{point}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_snapshots_are_taken_and_expire() {
    let daemon = Daemon::start_with_args(&["--volume-snapshot-day-secs", "2"]).await;
    let volume = create_volume(
        &daemon,
        CreateVolumeRequest {
            snapshot_retention: Some(1),
            ..named("daily")
        },
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let first = loop {
        let snapshots = daemon
            .client()
            .list_volume_snapshots(APP, &volume.id)
            .await
            .expect("list");
        if let Some(first) = snapshots.first() {
            break first.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled snapshot\n{}",
            daemon.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(first.kind, "scheduled");
    loop {
        let snapshots = daemon
            .client()
            .list_volume_snapshots(APP, &volume.id)
            .await
            .expect("list");
        assert!(snapshots.len() <= 3, "retention not applied: {snapshots:?}");
        if snapshots.iter().all(|s| s.id != first.id) && !snapshots.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "snapshot never expired\n{}",
            daemon.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Runs the `roost` CLI against `daemon` and returns its stdout, failing on error.
fn cli(daemon: &Daemon, args: &[&str]) -> String {
    common::stdout_of(daemon.cli(args).env("ROOST_APP", APP))
}

fn cli_json(daemon: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&cli(daemon, &args)).expect("json output")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_manages_volumes() {
    let daemon = Daemon::start().await;
    let id = cli(&daemon, &["volumes", "create", "cli_data", "--size", "1"])
        .trim()
        .to_string();
    assert!(id.starts_with("vol_"), "{id}");
    let machine = cli(
        &daemon,
        &[
            "machine",
            "run",
            common::IMAGE,
            "--volume",
            &format!("{id}:/data"),
            "--",
            "sleep",
            "1000",
        ],
    )
    .trim()
    .to_string();
    assert!(cli(&daemon, &["volumes", "list"]).contains(&machine));
    assert_eq!(
        cli_json(&daemon, &["volumes", "show", &id])["attached_machine_id"],
        machine.as_str()
    );
    assert_eq!(
        cli_json(&daemon, &["volumes", "extend", &id, "--size", "2"])["volume"]["size_gb"],
        2
    );
    let snapshot = cli_json(&daemon, &["volumes", "snapshots", "create", &id]);
    let listed = cli_json(&daemon, &["volumes", "snapshots", "list", &id]);
    assert_eq!(listed[0]["id"], snapshot["id"]);
    let fork = cli_json(&daemon, &["volumes", "fork", &id]);
    assert_eq!(fork["name"], "cli_data");
    assert_eq!(fork["size_gb"], 2);
    let fork_id = fork["id"].as_str().expect("fork id");
    assert_eq!(
        cli_json(&daemon, &["volumes", "destroy", fork_id])["state"],
        "destroyed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_app_deletes_its_volumes() {
    let daemon = Daemon::start().await;
    let client = daemon.client();
    let app = "volumes-doomed";
    client.create_app(app).await.expect("create app");
    let volume = client
        .create_volume(app, &named("doomed"))
        .await
        .unwrap_or_else(|e| panic!("create volume: {e}\n{}", daemon.log()));
    let machine = client
        .create_machine(
            app,
            &CreateMachineRequest {
                config: config_with_volume(&volume.id),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create machine: {e}\n{}", daemon.log()));
    let dir = daemon.data_dir().join("volumes").join(&volume.id);
    assert!(dir.join("image").exists(), "the volume has an image");

    client.delete_app(app).await.unwrap_or_else(|e| {
        panic!(
            "delete app with machine {}: {e}\n{}",
            machine.id,
            daemon.log()
        )
    });
    assert!(!dir.exists(), "the app's volume outlived the app");
    assert!(
        common::loop_devices_under(&daemon.data_dir()).is_empty(),
        "a loop device outlived the app's volume"
    );
    let volumes: Vec<serde_json::Value> = daemon
        .http(Method::GET, &format!("/v1/apps/{app}/volumes"))
        .send()
        .await
        .expect("list volumes")
        .json()
        .await
        .unwrap_or_default();
    assert!(
        volumes.is_empty(),
        "volumes listed after app delete: {volumes:?}"
    );
}
