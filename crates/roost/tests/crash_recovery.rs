//! Durable operations: roost is killed (SIGKILL, via `ROOST_CRASH_AT`) right
//! after every step of every kind of machine operation (create, start,
//! stop, restart, update with and without a runtime switch, destroy, and
//! the three ways a main process's exit is handled) and of every kind of
//! volume operation (create, restore, fork, extend, snapshot, destroy),
//! restarted, and every machine or volume must converge to the state its
//! plan settles in, with no leaked process, mount, loop device or
//! container. The steps are the lifecycle model's plans, so a step added
//! to a plan is crashed at without editing this test.

mod common;

use common::{Daemon, APP, IMAGE};
use roost_client::Client;
use roost_lifecycle::{
    AfterExit, Intent, MachinePlan, Operation, Transition, Update, VolumeIntent, VolumeOpKind,
    VolumePlan, VolumeSource, VolumeState,
};
use roost_types::{
    CreateMachineRequest, CreateVolumeRequest, ExecRequest, MachineConfig, MachineGuest,
    MachineInit, MachineRestart, MachineState, RestartPolicy, RootfsConfig, RootfsPersist,
    StopRequest, UpdateMachineRequest, Volume,
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
    create_with(client, config(RootfsPersist::Restart), skip_launch).await
}

async fn create_with(client: &Client, config: MachineConfig, skip_launch: bool) -> String {
    let req = CreateMachineRequest {
        config,
        skip_launch,
        ..Default::default()
    };
    client.create_machine(APP, &req).await.expect("create").id
}

/// What the main process's exit leads to, by the machine's config.
#[derive(Clone, Copy, Debug)]
enum AfterExitBy {
    /// Restart policy `no`: the machine stays stopped (an `exit` operation).
    Policy,
    /// Restart policy `always`: a `restart` operation.
    Restarting,
    /// `auto_destroy`: a `destroy` operation.
    AutoDestroy,
}

/// What an operation under test does once its machine is set up.
#[derive(Clone, Copy, Debug)]
enum Op {
    Launch,
    Start,
    Stop,
    Restart,
    Update,
    /// An update whose config asks for runc instead of crun.
    UpdateRuntime,
    Destroy,
    /// The main process is signalled through the API and exits by itself.
    Exit(AfterExitBy),
}

/// The exit code of `sleep` killed by SIGTERM.
const SIGTERM_EXIT: i32 = 128 + 15;

impl Op {
    /// The config the machine is created with.
    fn config(self) -> MachineConfig {
        let mut config = config(RootfsPersist::Restart);
        if let Op::Exit(by) = self {
            config.restart = Some(MachineRestart {
                policy: match by {
                    AfterExitBy::Restarting => RestartPolicy::Always,
                    _ => RestartPolicy::No,
                },
                ..Default::default()
            });
            config.auto_destroy = Some(matches!(by, AfterExitBy::AutoDestroy));
        }
        config
    }

    /// The config an update replaces it with.
    fn updated_config(self) -> MachineConfig {
        let mut config = self.config();
        config.env.insert("VERSION".into(), "2".into());
        if let Op::UpdateRuntime = self {
            config.guest = Some(MachineGuest {
                runtime: Some("runc".into()),
                ..Default::default()
            });
        }
        config
    }

    /// The plan the service runs for this operation, from the lifecycle
    /// model: the crash points and the settled state come from it, so a
    /// step added to a plan is crashed at without editing this test.
    fn plan(self) -> MachinePlan {
        let config = self.config();
        let update = |switch_runtime: Option<&str>| {
            Intent::update(
                &self.updated_config(),
                Update {
                    persist: RootfsPersist::Restart,
                    image_changed: false,
                    switch_runtime: switch_runtime.map(String::from),
                    skip_launch: false,
                },
            )
        };
        let (state, intent) = match self {
            Op::Launch => (MachineState::Created, Intent::Create { launch: true }),
            Op::Start => (MachineState::Created, Intent::start(&config)),
            Op::Stop => (MachineState::Started, Intent::Stop),
            Op::Restart => (MachineState::Started, Intent::restart(&config)),
            Op::Update => (MachineState::Started, update(None)),
            Op::UpdateRuntime => (MachineState::Started, update(Some("runc"))),
            Op::Destroy => (MachineState::Started, Intent::Destroy { force: true }),
            Op::Exit(_) => (
                MachineState::Started,
                Intent::Exit(AfterExit::of(&config, Some(SIGTERM_EXIT), 0)),
            ),
        };
        match roost_lifecycle::transition(state, &intent) {
            Ok(Transition::Run(plan)) => plan,
            other => panic!("{self:?}: the model plans no operation: {other:?}"),
        }
    }

    /// The runtime the machine's container runs under once it settles.
    fn runtime(self) -> &'static str {
        match self {
            Op::UpdateRuntime => "runc",
            _ => "crun",
        }
    }

    /// Sets up the machine (before the crash point can trigger) and returns its id.
    async fn setup(self, client: &Client) -> Option<String> {
        match self {
            Op::Launch => None,
            Op::Start => Some(create_with(client, self.config(), true).await),
            Op::Exit(_) => {
                let id = create_with(client, self.config(), false).await;
                main_process_runs(client, &id).await;
                Some(id)
            }
            _ => Some(create_with(client, self.config(), false).await),
        }
    }

    /// Runs the operation; the daemon dies during it, so the call fails
    /// (or, for a signal, the daemon dies right after answering).
    async fn run(self, client: &Client, id: Option<&str>) {
        let result = match (self, id) {
            (Op::Launch, _) => client
                .create_machine(
                    APP,
                    &CreateMachineRequest {
                        config: self.config(),
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
            (Op::Restart, Some(id)) => client
                .restart_machine(APP, id)
                .await
                .map(|_| ())
                .map_err(|_| ()),
            (Op::Update | Op::UpdateRuntime, Some(id)) => {
                let req = UpdateMachineRequest {
                    config: self.updated_config(),
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
            (Op::Exit(_), Some(id)) => client
                .post::<serde_json::Value>(
                    &format!("/v1/apps/{APP}/machines/{id}/signal"),
                    &serde_json::json!({"signal": "SIGTERM"}),
                )
                .await
                .map(|_| ())
                .map_err(|_| ()),
            (op, None) => panic!("{op:?} needs a machine"),
        };
        let _ = result;
    }
}

/// Waits (10 s at most) until machine `id`'s main process runs. A signal
/// sent before then reaches only its init, which, as a namespace's pid 1
/// that has not yet set up its handlers, drops it.
async fn main_process_runs(client: &Client, id: &str) {
    for _ in 0..100 {
        let ps = client
            .get::<Vec<roost_types::ProcessStat>>(&format!("/v1/apps/{APP}/machines/{id}/ps"))
            .await
            .expect("ps");
        if ps.iter().any(|p| p.command.starts_with("sleep")) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("machine {id}: its main process did not start in 10 s");
}

/// Crashes roost after each step of `op` and checks convergence.
async fn crash_after_every_step(op: Op) {
    let mut daemon = Daemon::start().await;
    let plan = op.plan();
    for point in plan.crash_points() {
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
            plan.settle,
            "{point}: machine did not converge\n{}",
            daemon.log()
        );
        check_host_state(&daemon, machine, op.runtime(), &point).await;
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
async fn check_host_state(
    daemon: &Daemon,
    machine: &roost_types::Machine,
    runtime: &str,
    point: &str,
) {
    let data = daemon.data_dir();
    let containers = common::leftover_containers(&data, runtime);
    let elsewhere =
        common::leftover_containers(&data, if runtime == "crun" { "runc" } else { "crun" });
    assert!(
        !elsewhere.contains(&machine.id),
        "{point}: the machine has a container under the other runtime"
    );
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
async fn restart_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::Restart).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn update_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::Update).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_switching_update_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::UpdateRuntime).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exit_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::Exit(AfterExitBy::Policy)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_after_an_exit_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::Exit(AfterExitBy::Restarting)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auto_destroy_after_an_exit_converges_after_a_crash_at_every_step() {
    crash_after_every_step(Op::Exit(AfterExitBy::AutoDestroy)).await;
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

/// The plan the service runs for a volume operation of `kind`, from the
/// lifecycle model (sources and sizes do not change its steps).
fn volume_plan(kind: VolumeOpKind) -> VolumePlan {
    let fstype = "ext4".to_string();
    let on_created =
        |intent| match roost_lifecycle::volume::transition(VolumeState::Created, intent) {
            Ok(Transition::Run(plan)) => plan,
            other => panic!("{kind:?}: the model plans no operation: {other:?}"),
        };
    let id = String::new();
    match kind {
        VolumeOpKind::Create => VolumePlan::build(VolumeSource::Empty { fstype }, 1 << 30),
        VolumeOpKind::Restore => VolumePlan::build(VolumeSource::Snapshot { id, fstype }, 1 << 30),
        VolumeOpKind::Fork => VolumePlan::build(VolumeSource::Volume { id, fstype }, 1 << 30),
        VolumeOpKind::Extend => on_created(VolumeIntent::Extend),
        VolumeOpKind::Snapshot => on_created(VolumeIntent::Snapshot),
        VolumeOpKind::Destroy => on_created(VolumeIntent::Destroy),
    }
}

fn volume_named(name: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: Some(name.into()),
        size_gb: Some(1),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn volume_operations_converge_after_a_crash_at_every_step() {
    let mut daemon = Daemon::start().await;
    let client = daemon.client();
    let base = client
        .create_volume(APP, &volume_named("base"))
        .await
        .expect("base volume");
    let snapshot = client
        .create_volume_snapshot(APP, &base.id)
        .await
        .expect("snapshot");
    for kind in VolumeOpKind::ALL {
        let plan = volume_plan(kind);
        for point in plan.crash_points() {
            let victim = daemon
                .client()
                .create_volume(APP, &volume_named("victim"))
                .await
                .expect("victim volume");
            daemon.kill();
            daemon.spawn(Some(&point)).await;
            let client = daemon.client();
            let built = |source: CreateVolumeRequest| CreateVolumeRequest {
                name: Some("crashed".into()),
                ..source
            };
            let request = match kind {
                VolumeOpKind::Create => client
                    .create_volume(APP, &built(Default::default()))
                    .await
                    .map(|_| ()),
                VolumeOpKind::Restore => client
                    .create_volume(
                        APP,
                        &built(CreateVolumeRequest {
                            snapshot_id: Some(snapshot.id.clone()),
                            ..Default::default()
                        }),
                    )
                    .await
                    .map(|_| ()),
                VolumeOpKind::Fork => client
                    .create_volume(
                        APP,
                        &built(CreateVolumeRequest {
                            source_volume_id: Some(victim.id.clone()),
                            ..Default::default()
                        }),
                    )
                    .await
                    .map(|_| ()),
                VolumeOpKind::Extend => client.extend_volume(APP, &victim.id, 2).await.map(|_| ()),
                VolumeOpKind::Snapshot => client
                    .create_volume_snapshot(APP, &victim.id)
                    .await
                    .map(|_| ()),
                VolumeOpKind::Destroy => client.destroy_volume(APP, &victim.id).await.map(|_| ()),
            };
            assert!(request.is_err(), "{point}: roost should have died");
            assert!(!daemon.wait_exit().success(), "{point}");

            daemon.spawn(None).await;
            let client = daemon.client();
            let all: Vec<Volume> = client
                .get(&format!("/v1/apps/{APP}/volumes"))
                .await
                .expect("list");
            for volume in &all {
                assert_eq!(
                    volume.state,
                    "created",
                    "{point}: {volume:?}\n{}",
                    daemon.log()
                );
            }
            // The volume the operation acted on, where its plan settles it.
            let subject = if kind.builds() {
                all.iter().find(|v| v.name == "crashed")
            } else {
                all.iter().find(|v| v.id == victim.id)
            };
            match plan.settle() {
                VolumeState::Destroyed => {
                    assert!(subject.is_none(), "{point}: {subject:?}");
                    assert!(
                        !daemon.data_dir().join("volumes").join(&victim.id).exists(),
                        "{point}"
                    );
                }
                settled => {
                    let subject =
                        subject.unwrap_or_else(|| panic!("{point}: volume missing: {all:?}"));
                    assert_eq!(subject.state, settled.as_str(), "{point}");
                }
            }
            match kind {
                VolumeOpKind::Extend => {
                    let grown = client.get_volume(APP, &victim.id).await.expect("get");
                    assert_eq!(grown.size_gb, 2, "{point}");
                }
                VolumeOpKind::Snapshot => {
                    let snapshots = client
                        .list_volume_snapshots(APP, &victim.id)
                        .await
                        .expect("snapshots");
                    assert_eq!(snapshots.len(), 1, "{point}");
                }
                _ => {}
            }
            daemon.check_no_volume_leaks(&point).await;
            for volume in all.iter().filter(|v| v.id != base.id) {
                client
                    .destroy_volume(APP, &volume.id)
                    .await
                    .unwrap_or_else(|e| panic!("{point}: cleanup {}: {e}", volume.id));
            }
        }
    }
}

/// What a roost of layout 4 (before volumes had columns) kept of the
/// volumes, snapshots and volume operations a layout-5 database holds: the
/// wire types as JSON documents, and a plan remembering the wire volume.
const BACK_TO_LAYOUT_4: &str = "
CREATE TABLE old_volumes (id TEXT PRIMARY KEY, app TEXT NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL);
INSERT INTO old_volumes SELECT id, app, state, json_object('app', app, 'volume', json_object(
        'id', id, 'name', name, 'state', state, 'size_gb', size_gb, 'region', region,
        'zone', zone, 'encrypted', json(iif(encrypted, 'true', 'false')),
        'attached_machine_id', NULL, 'attached_alloc_id', NULL, 'created_at', created_at,
        'blocks', 0, 'block_size', 0, 'blocks_free', 0, 'blocks_avail', 0, 'fstype', fstype,
        'snapshot_retention', snapshot_retention,
        'auto_backup_enabled', json(iif(auto_backup_enabled, 'true', 'false')),
        'host_dedication_key', host_dedication_key))
    FROM volumes ORDER BY rowid;
DROP TABLE volumes;
ALTER TABLE old_volumes RENAME TO volumes;
CREATE INDEX volumes_by_app ON volumes(app);
CREATE TABLE old_snapshots (id TEXT PRIMARY KEY, volume_id TEXT NOT NULL, data TEXT NOT NULL);
INSERT INTO old_snapshots SELECT id, volume_id, json_object('app', app, 'volume_id', volume_id,
        'snapshot', json_object('id', id, 'created_at', created_at, 'digest', digest,
            'size', stored_bytes, 'status', status, 'volume_size', volume_size, 'type', kind),
        'created_ms', created_ms)
    FROM volume_snapshots ORDER BY rowid;
DROP TABLE volume_snapshots;
ALTER TABLE old_snapshots RENAME TO volume_snapshots;
CREATE INDEX snapshots_by_volume ON volume_snapshots(volume_id);
UPDATE operations SET params = json_set(json_remove(params, '$.previous.app'),
        '$.previous.attached_machine_id', json('null'), '$.previous.attached_alloc_id', json('null'),
        '$.previous.blocks', 0, '$.previous.block_size', 0, '$.previous.blocks_free', 0,
        '$.previous.blocks_avail', 0)
    WHERE subject = 'volume' AND json_type(params, '$.previous') = 'object';
PRAGMA user_version = 4;
";

/// A volume operation an older roost was killed in resumes after the
/// upgrade: its logged plan remembered the wire volume, which the
/// migration turns into the record the plan now puts back on failure.
#[tokio::test(flavor = "multi_thread")]
async fn a_volume_operation_an_older_roost_left_unfinished_resumes() {
    let mut daemon = Daemon::start().await;
    let client = daemon.client();
    let victim = client
        .create_volume(APP, &volume_named("victim"))
        .await
        .expect("victim volume");
    client
        .create_volume_snapshot(APP, &victim.id)
        .await
        .expect("snapshot");
    daemon.kill();
    daemon.spawn(Some("volume_extend:grow_filesystem")).await;
    let extended = daemon.client().extend_volume(APP, &victim.id, 2).await;
    assert!(extended.is_err(), "roost should have died");
    assert!(!daemon.wait_exit().success());
    let conn = rusqlite::Connection::open(daemon.data_dir().join("roost.db")).unwrap();
    let logged: String = conn
        .query_row(
            "SELECT params FROM operations WHERE subject_id = ?1",
            [&victim.id],
            |row| row.get(0),
        )
        .expect("the extend is logged");
    assert!(logged.contains("\"previous\""), "{logged}");
    conn.execute_batch(BACK_TO_LAYOUT_4).unwrap();
    drop(conn);

    daemon.spawn(None).await;
    let client = daemon.client();
    let grown = client.get_volume(APP, &victim.id).await.expect("get");
    assert_eq!(
        (grown.size_gb, grown.state.as_str()),
        (2, "created"),
        "{}",
        daemon.log()
    );
    let snapshots = client
        .list_volume_snapshots(APP, &victim.id)
        .await
        .expect("snapshots");
    assert_eq!(snapshots.len(), 1);
    daemon.check_no_volume_leaks("resumed extend").await;
    client
        .destroy_volume(APP, &victim.id)
        .await
        .expect("cleanup");
}
