//! The schema fuzzer against `roost up`: schemathesis generates requests from
//! Fly's Machines API spec (`tests/schema_fuzz/fly-machines-openapi.yaml`),
//! valid and invalid, sends them with the admin token, and the run passes only
//! if no answer is a 5xx and no connection is dropped or left unanswered.
//! Hand-written bad-input tests cover the cases someone thought of; this covers
//! the ones nobody did (a panic in a handler drops the connection).
//!
//! Bounded: a fixed time budget, a timeout per request, and a kill of the
//! fuzzer if it overruns. Hermetic: the daemon listens on loopback only, and
//! any registry pull a generated image name asks for goes to a closed loopback
//! port (through the proxy variables roost's HTTP client honours), so no
//! generated request reaches beyond this host. Afterwards every app is
//! deleted, which must remove every machine and volume the run left.

mod common;

use common::{sh_config, Daemon, APP};
use roost_types::{CreateMachineRequest, CreateVolumeRequest};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long the fuzzer generates requests.
const FUZZ_SECS: u64 = 180;
/// How long one request may take before it counts as unanswered: the longest
/// the API lets a request wait (a wait, exec or stop timeout of 300 s, then the
/// 10 s kill grace), and a margin.
const REQUEST_TIMEOUT_SECS: u64 = 330;

/// A started machine of [`APP`] for the fuzzer's requests to work on.
async fn machine(daemon: &Daemon) -> String {
    let request = CreateMachineRequest {
        config: sh_config("sleep 3600"),
        ..Default::default()
    };
    let created = daemon.client().create_machine(APP, &request).await;
    created.expect("create machine").id
}

/// A volume of [`APP`] named `name`.
async fn volume(daemon: &Daemon, name: &str) -> String {
    let request = CreateVolumeRequest {
        name: Some(name.into()),
        size_gb: Some(1),
        ..Default::default()
    };
    let created = daemon.client().create_volume(APP, &request).await;
    created.expect("create volume").id
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fly_spec_fuzzer_finds_no_server_error() {
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let daemon = Daemon::start_with_env(&[
        ("HTTPS_PROXY", closed.as_str()),
        ("HTTP_PROXY", closed.as_str()),
        ("ALL_PROXY", closed.as_str()),
        ("NO_PROXY", ""),
    ])
    .await;
    let client = daemon.client();
    client
        .create_app("fuzz-doomed")
        .await
        .expect("create the app the fuzzer deletes");
    // Named by tests/schema_fuzz/schemathesis.toml, which says why.
    let ids = [
        ("FUZZ_MACHINE_ID", machine(&daemon).await),
        ("FUZZ_DOOMED_MACHINE_ID", machine(&daemon).await),
        ("FUZZ_VOLUME_ID", volume(&daemon, "fuzzed").await),
        ("FUZZ_DOOMED_VOLUME_ID", volume(&daemon, "doomed").await),
    ];

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schema_fuzz");
    let mut fuzzer = tokio::process::Command::new("schemathesis");
    fuzzer
        .current_dir(daemon.dir.path())
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .arg("run")
        .arg(dir.join("fly-machines-openapi.yaml"))
        .arg("--url")
        .arg(format!("{}/v1", daemon.url))
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", daemon.token))
        .args(["--checks", "not_a_server_error"])
        // Not the examples phase: the spec has examples for a few bodies only,
        // and the other phases send them too.
        .args(["--phases", "coverage,fuzzing,stateful"])
        .args(["--max-time", &FUZZ_SECS.to_string()])
        .args(["--request-timeout", &REQUEST_TIMEOUT_SECS.to_string()])
        // One worker: with two, the generator's threads parse Python source
        // at once, which Python 3.11 sometimes fails at ("AST constructor
        // recursion depth mismatch"), failing the run for nothing roost did.
        .args(["--workers", "1", "--no-color"])
        .args(["--generation-database", "none"])
        .envs(ids.iter().map(|(name, id)| (name, id)))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let budget = Duration::from_secs(FUZZ_SECS + REQUEST_TIMEOUT_SECS + 60);
    let output = tokio::time::timeout(budget, fuzzer.output())
        .await
        .unwrap_or_else(|_| panic!("the fuzzer ran past {budget:?}"))
        .expect("run schemathesis (installed by .ci/run)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found server errors or dropped connections ({}):\n{stdout}\n{}\ndaemon log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        daemon.log()
    );
    assert!(
        stdout.contains("passed") && !stdout.contains("Network Error"),
        "schemathesis ran nothing or lost connections:\n{stdout}"
    );

    let apps = client.list_apps().await.expect("list apps after fuzzing");
    for app in apps.apps {
        client
            .delete_app(&app.name)
            .await
            .unwrap_or_else(|e| panic!("delete app {}: {e}\n{}", app.name, daemon.log()));
    }
    assert_eq!(client.list_apps().await.expect("list apps").total_apps, 0);
    let data = daemon.data_dir();
    assert_eq!(
        common::leftover_containers(&data, "crun"),
        Vec::<String>::new()
    );
    assert_eq!(
        common::leftover_containers(&data, "runc"),
        Vec::<String>::new()
    );
    assert_eq!(common::mounts_under(&data), Vec::<PathBuf>::new());
}
