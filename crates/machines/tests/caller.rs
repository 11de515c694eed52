//! Every operation of the service passes its one rights check: a caller
//! without rights is refused by each, before anything is read or changed,
//! and the operations exercised here are exactly those the facade has.

use roost_machines::{
    Caller, ListFilter, MachineError, Machines, MachinesConfig, Right, Rights, Service, Who,
};
use roost_types::{EgressDefault, EgressPolicy, MachineState};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

const APP: &str = "a";
const ID: &str = "0123456789abcd";

/// A request type from its JSON, as a front end would receive it.
fn req<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid request")
}

type Call<'a> = Pin<Box<dyn Future<Output = Result<(), MachineError>> + 'a>>;

/// One call per operation of [`Service`], by name, its answer discarded.
fn every_operation(s: &Service) -> Vec<(&'static str, Call<'_>)> {
    fn done<T>(result: Result<T, MachineError>) -> Result<(), MachineError> {
        result.map(|_| ())
    }
    macro_rules! call {
        ($name:literal, async $e:expr) => {
            ($name, Box::pin(async move { done($e.await) }) as Call<'_>)
        };
        ($name:literal, $e:expr) => {
            ($name, Box::pin(async move { done($e) }) as Call<'_>)
        };
    }
    let stop = || req::<roost_types::StopRequest>(json!({}));
    let config = || json!({"image": "busybox:latest"});
    vec![
        call!("change_count", s.change_count()),
        call!("changed_since", s.changed_since(0)),
        call!("set_checks", s.set_checks(APP, ID, vec![])),
        call!("egress_policy", s.egress_policy(APP)),
        call!(
            "set_egress_policy",
            s.set_egress_policy(APP, EgressPolicy::only(EgressDefault::Allow))
        ),
        call!("egress_log", s.egress_log(APP)),
        call!("read_file", async s.read_file(APP, ID, "/etc/hostname", 0, None)),
        call!("write_file", async s.write_file(APP, ID, "/x", b"x".to_vec(), 0o644)),
        call!("list_dir", async s.list_dir(APP, ID, "/")),
        call!("log_tail", s.log_tail(APP, ID, 10)),
        // Not a reference: nothing is fetched, whoever asks.
        call!("pull_image", async s.pull_image("not a reference", None, |_| {})),
        call!("remove_image", s.remove_image("busybox:latest")),
        call!("prune_images", async s.prune_images()),
        call!("create_app", s.create_app(req(json!({"app_name": APP})))),
        call!("get_app", s.get_app(APP)),
        call!("list_apps", s.list_apps(None)),
        call!("delete_app", async s.delete_app(APP)),
        call!(
            "create_machine",
            async s.create_machine(APP, req(json!({ "config": config() })))
        ),
        call!(
            "list_machines",
            s.list_machines(APP, &ListFilter::default())
        ),
        call!("machines_for_routing", s.machines_for_routing(APP)),
        call!("get_machine", s.get_machine(APP, ID)),
        call!("start_machine", async s.start_machine(APP, ID, None)),
        call!("stop_machine", async s.stop_machine(APP, ID, stop(), None)),
        call!("restart_machine", async s.restart_machine(APP, ID, stop(), None)),
        call!("signal_machine", async s.signal_machine(APP, ID, "SIGTERM", None)),
        call!(
            "update_machine",
            async s.update_machine(APP, ID, req(json!({ "config": config() })), None)
        ),
        call!("destroy_machine", async s.destroy_machine(APP, ID, true, None)),
        call!(
            "wait_machine",
            async s.wait_machine(APP, ID, MachineState::Started, Some(1), None)
        ),
        call!("events", s.events(APP, ID)),
        call!("versions", s.versions(APP, ID)),
        call!(
            "acquire_lease",
            s.acquire_lease(APP, ID, req(json!({})), None)
        ),
        call!("get_lease", s.get_lease(APP, ID)),
        call!("release_lease", s.release_lease(APP, ID, None)),
        call!("get_metadata", s.get_metadata(APP, ID)),
        call!("set_metadata", async s.set_metadata(APP, ID, "k", Some("v".into()), None)),
        call!("set_cordoned", async s.set_cordoned(APP, ID, true, None)),
        call!("processes", async s.processes(APP, ID)),
        call!("exec", async s.exec(APP, ID, req(json!({"command": ["true"]})))),
        call!("log_files", s.log_files(APP, ID)),
        call!(
            "import_image",
            s.import_image(std::path::Path::new("/nonexistent"), "x")
        ),
        call!("list_images", s.list_images()),
        call!("list_secrets", s.list_secrets(APP)),
        call!(
            "update_secrets",
            s.update_secrets(APP, BTreeMap::from([("K".to_string(), None)]))
        ),
        call!("create_storage", async s.create_storage(APP, None)),
        call!("list_storage", async s.list_storage(None)),
        call!("destroy_storage", async s.destroy_storage(APP, "b")),
        call!("create_volume", async s.create_volume(APP, req(json!({"name": "v"})))),
        call!("list_volumes", s.list_volumes(APP)),
        call!("get_volume", s.get_volume(APP, "vol_x")),
        call!("update_volume", async s.update_volume(APP, "vol_x", req(json!({})))),
        call!(
            "extend_volume",
            async s.extend_volume(APP, "vol_x", req(json!({"size_gb": 2})))
        ),
        call!("destroy_volume", async s.destroy_volume(APP, "vol_x")),
        call!(
            "list_volume_snapshots",
            s.list_volume_snapshots(APP, "vol_x")
        ),
        call!("create_volume_snapshot", async s.create_volume_snapshot(APP, "vol_x")),
    ]
}

/// The public methods of every `impl Service` block in the crate's source.
fn service_methods() -> BTreeSet<String> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for block in text.split("\nimpl Service {\n").skip(1) {
            let body = block.split("\n}\n").next().unwrap();
            for line in body.lines() {
                let Some(rest) = line
                    .strip_prefix("    pub fn ")
                    .or_else(|| line.strip_prefix("    pub async fn "))
                else {
                    continue;
                };
                let name = rest.split(['(', '<']).next().unwrap();
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// Each operation's answer, in order, or a panic naming one that took
/// longer than `limit`.
async fn answers(
    calls: Vec<(&'static str, Call<'_>)>,
    limit: Duration,
) -> Vec<(&'static str, Result<(), MachineError>)> {
    let mut answers = Vec::new();
    for (name, call) in calls {
        match tokio::time::timeout(limit, call).await {
            Ok(answer) => answers.push((name, answer)),
            Err(_) => panic!("{name} did not answer within {limit:?}"),
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_rights_is_refused_by_every_operation() {
    let (_dir, machines) = open().await;
    let nobody = machines.as_caller(&Caller::new(Who::Admin, Rights::NONE));
    let calls = every_operation(&nobody);
    let exercised: BTreeSet<String> = calls.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(exercised.len(), calls.len(), "an operation is listed twice");
    assert_eq!(
        exercised,
        service_methods(),
        "every operation of Service must be called here"
    );
    for (name, answer) in answers(calls, Duration::from_secs(10)).await {
        match answer {
            Err(MachineError::Forbidden(refused)) => {
                let text = refused.to_string();
                assert!(text.contains("the admin token"), "{name}: {text}");
                assert!(Right::ALL.contains(&refused.right), "{name}");
            }
            other => panic!("{name} was not refused: {other:?}"),
        }
    }
    // Refused calls changed nothing: no app, no image, no bucket.
    let admin = machines.as_caller(&Caller::admin());
    assert_eq!(admin.list_apps(None).unwrap().total_apps, 0);
    assert!(admin.list_images().unwrap().is_empty());
    assert!(admin.list_storage(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_passes_the_check_of_every_operation() {
    let (_dir, machines) = open().await;
    let admin = machines.as_caller(&Caller::admin());
    for (name, answer) in answers(every_operation(&admin), Duration::from_secs(30)).await {
        if let Err(MachineError::Forbidden(refused)) = answer {
            panic!("{name} refused: {refused}");
        }
    }
}

/// The service over a new data dir, removed when the dir is dropped. Its
/// log relay is never run: no machine starts in these tests.
async fn open() -> (tempfile::TempDir, Machines) {
    let dir = tempfile::tempdir().unwrap();
    let relay = roost_machines::LogRelay::new("/bin/false", Vec::<String>::new(), 1024);
    let machines = Machines::open(MachinesConfig::new(dir.path().join("data"), relay))
        .await
        .unwrap();
    (dir, machines)
}
