//! Durable operations: roost is killed (SIGKILL, via `ROOST_CRASH_AT`) right
//! after every step of create, start, stop, update and destroy, restarted,
//! and every machine must converge to a valid state with no leaked process,
//! mount or container.

mod common;

use common::{Daemon, APP, IMAGE};
use roost_client::Client;
use roost_types::{
    CreateMachineRequest, ExecRequest, MachineConfig, MachineInit, MachineState, RootfsConfig,
    RootfsPersist, StopRequest, UpdateMachineRequest,
};

fn config(persist: RootfsPersist) -> MachineConfig {
    MachineConfig {
        image: IMAGE.into(),
        init: Some(MachineInit {
            cmd: vec!["sleep".into(), "1000".into()],
            ..Default::default()
        }),
        files: vec![roost_types::MachineFile {
            guest_path: "/etc/roost-test".into(),
            raw_value: Some("aGVsbG8=".into()),
            ..Default::default()
        }],
        rootfs: Some(RootfsConfig {
            persist: Some(persist),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create(client: &Client, skip_launch: bool) -> String {
    let req = CreateMachineRequest {
        config: config(RootfsPersist::Restart),
        skip_launch,
        ..Default::default()
    };
    client.create_machine(APP, &req).await.expect("create").id
}

/// What an operation under test does once its machine is set up.
#[derive(Clone, Copy, Debug)]
enum Op {
    Launch,
    Start,
    Stop,
    Update,
    Destroy,
}

impl Op {
    /// Its steps, as named by the orchestrator's operation plans.
    fn steps(self) -> &'static [&'static str] {
        match self {
            Op::Launch => &[
                "prepare",
                "connect_network",
                "mount_rootfs",
                "write_files",
                "run",
            ],
            Op::Start => &["reset_rootfs", "mount_rootfs", "write_files", "run"],
            Op::Stop => &["signal_stop", "delete_container", "unmount_rootfs"],
            Op::Update => &[
                "signal_stop",
                "delete_container",
                "unmount_rootfs",
                "prepare",
                "mount_rootfs",
                "write_files",
                "run",
            ],
            Op::Destroy => &[
                "signal_stop",
                "delete_container",
                "unmount_rootfs",
                "disconnect_network",
                "remove_files",
            ],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Launch => "launch",
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Update => "update",
            Op::Destroy => "destroy",
        }
    }

    /// The state the machine must reach once the operation is resumed.
    fn settles_in(self) -> MachineState {
        match self {
            Op::Launch | Op::Start | Op::Update => MachineState::Started,
            Op::Stop => MachineState::Stopped,
            Op::Destroy => MachineState::Destroyed,
        }
    }

    /// Sets up the machine (before the crash point can trigger) and returns its id.
    async fn setup(self, client: &Client) -> Option<String> {
        match self {
            Op::Launch => None,
            Op::Start => Some(create(client, true).await),
            Op::Stop | Op::Update | Op::Destroy => Some(create(client, false).await),
        }
    }

    /// Runs the operation; the daemon dies during it, so the call fails.
    async fn run(self, client: &Client, id: Option<&str>) {
        let result = match (self, id) {
            (Op::Launch, _) => client
                .create_machine(
                    APP,
                    &CreateMachineRequest {
                        config: config(RootfsPersist::Restart),
                        ..Default::default()
                    },
                )
                .await
                .map(|_| ())
                .map_err(|_| ()),
            (Op::Start, Some(id)) => client
                .start_machine(APP, id)
                .await
                .map(|_| ())
                .map_err(|_| ()),
            (Op::Stop, Some(id)) => client
                .stop_machine(APP, id, &StopRequest::default())
                .await
                .map(|_| ())
                .map_err(|_| ()),
            (Op::Update, Some(id)) => {
                let mut config = config(RootfsPersist::Restart);
                config.env.insert("VERSION".into(), "2".into());
                let req = UpdateMachineRequest {
                    config,
                    ..Default::default()
                };
                client
                    .post::<serde_json::Value>(&format!("/v1/apps/{APP}/machines/{id}"), &req)
                    .await
                    .map(|_| ())
                    .map_err(|_| ())
            }
            (Op::Destroy, Some(id)) => client
                .destroy_machine(APP, id, true)
                .await
                .map(|_| ())
                .map_err(|_| ()),
            (op, None) => panic!("{op:?} needs a machine"),
        };
        let _ = result;
    }
}

/// Crashes roost after each step of `op` and checks convergence.
async fn crash_after_every_step(op: Op) {
    let mut daemon = Daemon::start().await;
    for step in op.steps() {
        let point = format!("{}:{step}", op.name());
        daemon.kill();
        daemon.spawn(Some(&point)).await;
        let client = daemon.client();
        let id = op.setup(&client).await;
        op.run(&client, id.as_deref()).await;
        let status = daemon.wait_exit();
        assert!(
            !status.success(),
            "{point}: roost should have been killed, got {status}"
        );

        daemon.spawn(None).await;
        let client = daemon.client();
        let machines = client
            .get::<Vec<roost_types::Machine>>(&format!(
                "/v1/apps/{APP}/machines?include_deleted=true"
            ))
            .await
            .expect("list");
        let machine = match &id {
            Some(id) => machines.iter().find(|m| &m.id == id).expect("machine kept"),
            None => machines.last().expect("launched machine recorded"),
        };
        assert_eq!(
            machine.state,
            op.settles_in(),
            "{point}: machine did not converge\n{}",
            daemon.log()
        );
        check_host_state(&daemon, machine, &point).await;
        if machine.state != MachineState::Destroyed {
            client
                .destroy_machine(APP, &machine.id, true)
                .await
                .expect("cleanup destroy");
        }
    }
}

/// A started machine has exactly its container and works; any other has no
/// process, mount or container left.
async fn check_host_state(daemon: &Daemon, machine: &roost_types::Machine, point: &str) {
    let data = daemon.data_dir();
    let containers = common::leftover_containers(&data, "crun");
    let rootfs = data
        .join("machines")
        .join(&machine.id)
        .join("bundle")
        .join("rootfs");
    let mounted = common::mounts_under(&data).contains(&rootfs);
    if machine.state == MachineState::Started {
        assert!(
            containers.contains(&machine.id),
            "{point}: started machine has no container"
        );
        assert!(mounted, "{point}: started machine has no rootfs mount");
        let out = daemon
            .client()
            .exec(
                APP,
                &machine.id,
                &ExecRequest {
                    command: vec!["cat".into(), "/etc/roost-test".into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{point}: exec in recovered machine: {e}"));
        assert_eq!(out.stdout, "hello", "{point}");
    } else {
        assert!(
            !containers.contains(&machine.id),
            "{point}: container leaked: {containers:?}"
        );
        assert!(!mounted, "{point}: rootfs mount leaked");
        assert!(
            common::processes_mentioning(&machine.id).is_empty(),
            "{point}: process leaked"
        );
        assert!(
            common::cgroups_of(&machine.id).is_empty(),
            "{point}: cgroup leaked"
        );
    }
    let netns = daemon.netns_dir().join(&machine.id);
    let veth = format!("v{}", machine.id);
    if machine.state == MachineState::Destroyed {
        assert!(
            !data.join("machines").join(&machine.id).exists(),
            "{point}: files leaked"
        );
        assert!(!netns.exists(), "{point}: network namespace leaked");
        assert!(!common::link_exists(&veth), "{point}: veth leaked");
    } else {
        assert!(
            daemon.network().is_connected(&machine.id),
            "{point}: machine has no network namespace"
        );
        assert!(common::link_exists(&veth), "{point}: machine has no veth");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::Launch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn start_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::Start).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::Stop).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn update_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::Update).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::Destroy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn running_machines_survive_a_roost_restart() {
    let mut daemon = Daemon::start().await;
    let id = create(&daemon.client(), false).await;
    daemon.kill();
    daemon.spawn(None).await;
    let client = daemon.client();
    assert_eq!(
        client.get_machine(APP, &id).await.unwrap().state,
        MachineState::Started
    );
    // Its exit is still noticed after the restart.
    client
        .stop_machine(APP, &id, &StopRequest::default())
        .await
        .expect("stop adopted machine");
    assert!(common::processes_mentioning(&id).is_empty());
}
