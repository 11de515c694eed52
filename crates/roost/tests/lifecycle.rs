//! The machine lifecycle end to end: a real `roost up`, a real OCI runtime,
//! driven over the Fly Machines API.

mod common;

use common::{Daemon, APP, IMAGE};
use roost_types::{
    CreateMachineRequest, ExecRequest, MachineConfig, MachineInit, MachineState, StopRequest,
};

fn sleeper() -> CreateMachineRequest {
    CreateMachineRequest {
        config: MachineConfig {
            image: IMAGE.into(),
            init: Some(MachineInit {
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hello-from-main; exec sleep 1000".into(),
                ],
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn exec(daemon: &Daemon, id: &str, script: &str) -> roost_types::ExecResponse {
    daemon
        .client()
        .exec(
            APP,
            id,
            &ExecRequest {
                command: vec!["sh".into(), "-c".into(), script.into()],
                ..Default::default()
            },
        )
        .await
        .expect("exec")
}

#[tokio::test(flavor = "multi_thread")]
async fn run_exec_stop_start_persist_destroy() {
    let daemon = Daemon::start().await;
    let client = daemon.client();
    let machine = client
        .create_machine(APP, &sleeper())
        .await
        .expect("create");
    assert_eq!(machine.state, MachineState::Started);
    assert_eq!(machine.id.len(), 14);
    let id = machine.id.clone();

    let out = exec(&daemon, &id, "echo out; echo err >&2; hostname; exit 3").await;
    assert_eq!(out.stdout, format!("out\n{id}\n"));
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.exit_code, 3);

    // The rootfs persists across stop/start by default.
    exec(&daemon, &id, "echo kept > /root/state").await;
    client
        .stop_machine(APP, &id, &StopRequest::default())
        .await
        .expect("stop");
    assert_eq!(
        client.get_machine(APP, &id).await.unwrap().state,
        MachineState::Stopped
    );
    assert!(
        common::processes_mentioning(&id).is_empty(),
        "stopped machine has processes"
    );
    assert_eq!(
        common::mounts_under(&daemon.data_dir()),
        [daemon.data_dir().join("machines").join(&id).join("mnt")],
        "a stopped machine keeps a mount other than its rootfs disk"
    );
    client.start_machine(APP, &id).await.expect("start");
    let out = exec(&daemon, &id, "cat /root/state").await;
    assert_eq!(out.stdout, "kept\n");

    let logs = client
        .logs(APP, &id, false)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(logs.contains("hello-from-main"), "logs: {logs:?}");

    let events: Vec<String> = client
        .events(APP, &id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{}:{}", e.kind, e.status))
        .collect();
    assert_eq!(
        events.first().map(String::as_str),
        Some("start:started"),
        "{events:?}"
    );
    assert!(events.contains(&"stop:stopped".to_string()), "{events:?}");
    assert_eq!(
        events.last().map(String::as_str),
        Some("launch:created"),
        "{events:?}"
    );

    client
        .destroy_machine(APP, &id, true)
        .await
        .expect("destroy");
    let gone = client.get_machine(APP, &id).await.unwrap();
    assert_eq!(gone.state, MachineState::Destroyed);
    assert!(common::processes_mentioning(&id).is_empty());
    assert!(common::mounts_under(&daemon.data_dir()).is_empty());
    assert!(common::leftover_containers(&daemon.data_dir(), "crun").is_empty());
    assert!(!daemon.data_dir().join("machines").join(&id).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn tty_machines_log_through_their_terminal_across_roost_restarts() {
    let mut daemon = Daemon::start().await;
    let mut req = sleeper();
    req.config.init = Some(MachineInit {
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "[ -t 1 ] && echo stdout-is-a-tty; exec sleep 1000".into(),
        ],
        tty: true,
        ..Default::default()
    });
    let id = daemon
        .client()
        .create_machine(APP, &req)
        .await
        .expect("create")
        .id;
    let logs = |daemon: &Daemon| {
        let client = daemon.client();
        let id = id.clone();
        async move {
            client
                .logs(APP, &id, false)
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let mut seen = String::new();
    for _ in 0..50 {
        seen = logs(&daemon).await;
        if seen.contains("stdout-is-a-tty") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen.contains("stdout-is-a-tty"), "logs: {seen:?}");

    // The terminal outlives the roost process that created it.
    daemon.kill();
    daemon.spawn(None).await;
    let out = exec(&daemon, &id, "echo after-restart > /proc/1/fd/1").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    for _ in 0..50 {
        seen = logs(&daemon).await;
        if seen.contains("after-restart") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen.contains("after-restart"), "logs: {seen:?}");
    daemon
        .client()
        .destroy_machine(APP, &id, true)
        .await
        .expect("destroy");
    assert!(common::processes_mentioning(&id).is_empty());
}

/// Runs `program` with `args`, asserting that it succeeds.
fn run_ok(program: &str, args: &[&std::ffi::OsStr]) {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// A machine of a data dir from before rootfs disks kept its changes in
/// `DATA/machines/<id>/upper` on the data dir's filesystem. Its next start
/// copies them onto a new disk of its size: nothing is lost, and the old
/// directory is gone.
#[tokio::test(flavor = "multi_thread")]
async fn an_upper_dir_from_before_rootfs_disks_moves_onto_a_disk() {
    let mut daemon = Daemon::start().await;
    let client = daemon.client();
    let id = client
        .create_machine(APP, &sleeper())
        .await
        .expect("create")
        .id;
    let made = exec(
        &daemon,
        &id,
        "mkdir -p /root/a && echo old > /root/a/f && rm /bin/true",
    )
    .await;
    assert_eq!(made.exit_code, 0, "{made:?}");
    client
        .stop_machine(APP, &id, &StopRequest::default())
        .await
        .expect("stop");
    daemon.kill();

    // Back to the old layout: the upper dir beside the bundle, no disk.
    let dir = daemon.data_dir().join("machines").join(&id);
    let (mnt, legacy) = (dir.join("mnt"), dir.join("upper"));
    run_ok(
        "cp",
        &[
            "-a".as_ref(),
            mnt.join("upper").as_os_str(),
            legacy.as_os_str(),
        ],
    );
    nix::mount::umount2(&mnt, nix::mount::MntFlags::empty()).expect("unmount the disk");
    for device in common::loop_devices_under(&dir) {
        run_ok("losetup", &["-d".as_ref(), device.as_os_str()]);
    }
    std::fs::remove_file(dir.join("image")).expect("remove the disk");

    daemon.spawn(None).await;
    client.start_machine(APP, &id).await.expect("start");
    daemon.wait_state(&id, "started", 30).await;
    let kept = exec(
        &daemon,
        &id,
        "cat /root/a/f; test -e /bin/true || echo whiteout",
    )
    .await;
    assert_eq!(kept.stdout, "old\nwhiteout\n", "{kept:?}");
    assert!(!legacy.exists(), "the old upper dir is left behind");
    assert!(dir.join("image").exists(), "no disk was made");
    client
        .destroy_machine(APP, &id, true)
        .await
        .expect("destroy");
    assert!(common::mounts_under(&daemon.data_dir()).is_empty());
    assert!(common::loop_devices_left_under(&daemon.data_dir(), 10)
        .await
        .is_empty());
}
