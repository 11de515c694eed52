//! The `roost` CLI against a real daemon: tables by default, `--json`
//! everywhere, non-zero exit codes with an actionable message on failure.

mod common;

use common::{Daemon, APP, IMAGE};
use std::process::{Command, Output};

fn command(daemon: &Daemon, args: &[&str]) -> Command {
    let mut command = daemon.cli(args);
    command.env_remove("ROOST_APP");
    command
}

fn roost(daemon: &Daemon, args: &[&str]) -> Output {
    command(daemon, args).output().expect("run roost")
}

/// Runs roost with stdout a pipe whose reader is already gone, as in
/// `roost machine list | head -0`: every write to it fails with EPIPE.
fn roost_into_closed_pipe(daemon: &Daemon, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    command(daemon, args)
        .stdout(writer)
        .output()
        .expect("run roost")
}

fn ok(daemon: &Daemon, args: &[&str]) -> String {
    let out = roost(daemon, args);
    assert!(
        out.status.success(),
        "roost {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_drives_the_whole_lifecycle() {
    let daemon = Daemon::start().await;

    let apps = ok(&daemon, &["apps", "list"]);
    assert!(apps.starts_with("NAME") && apps.contains(APP), "{apps}");
    let images: serde_json::Value =
        serde_json::from_str(&ok(&daemon, &["image", "list", "--json"])).unwrap();
    assert_eq!(images[0]["reference"], IMAGE);

    let id = ok(
        &daemon,
        &[
            "machine",
            "run",
            IMAGE,
            "-a",
            APP,
            "--memory",
            "128",
            "--",
            "sh",
            "-c",
            "echo booted; exec sleep 1000",
        ],
    );
    let id = id.trim();
    assert_eq!(id.len(), 14, "{id}");
    ok(
        &daemon,
        &["machine", "wait", id, "-a", APP, "--state", "started"],
    );

    let list: serde_json::Value =
        serde_json::from_str(&ok(&daemon, &["machine", "list", "-a", APP, "--json"])).unwrap();
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["config"]["guest"]["memory_mb"], 128);
    let table = ok(&daemon, &["machine", "status", id, "-a", APP]);
    assert!(
        table.contains("started") && table.contains("launch"),
        "{table}"
    );

    assert_eq!(
        ok(
            &daemon,
            &["machine", "exec", id, "-a", APP, "--", "echo", "inside"]
        ),
        "inside\n"
    );
    let failing = roost(
        &daemon,
        &["machine", "exec", id, "-a", APP, "--", "sh", "-c", "exit 4"],
    );
    assert!(!failing.status.success());
    assert!(String::from_utf8_lossy(&failing.stderr).contains("exited with code 4"));

    assert!(ok(&daemon, &["machine", "logs", id, "-a", APP]).contains("booted"));
    ok(
        &daemon,
        &["machine", "stop", id, "-a", APP, "--timeout", "2"],
    );
    let status: serde_json::Value = serde_json::from_str(&ok(
        &daemon,
        &["machine", "status", id, "-a", APP, "--json"],
    ))
    .unwrap();
    assert_eq!(status["state"], "stopped");
    ok(&daemon, &["machine", "start", id, "-a", APP]);
    ok(&daemon, &["machine", "restart", id, "-a", APP]);

    // Failures: non-zero exit and a message saying what to do.
    let refused = roost(&daemon, &["machine", "destroy", id, "-a", APP]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("force"), "{message}");
    let unknown = roost(&daemon, &["machine", "run", "nope:latest", "-a", APP]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("roost image import"));
    let no_app = roost(&daemon, &["machine", "list", "-a", "nope"]);
    assert!(!no_app.status.success());
    let message = String::from_utf8_lossy(&no_app.stderr);
    assert!(
        message.contains("app 'nope' not found")
            && message.contains("hint: create it with `roost apps create nope`"),
        "{message}"
    );

    ok(&daemon, &["machine", "destroy", id, "-a", APP, "--force"]);
    ok(&daemon, &["apps", "destroy", APP]);
    assert!(!ok(&daemon, &["apps", "list"]).contains(APP));
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_stdout_ends_quietly() {
    let daemon = Daemon::start().await;
    for args in [
        &["apps", "list"][..],
        &["image", "list"],
        &["image", "list", "--json"],
        &["machine", "list", "-a", APP],
        &["--help"],
    ] {
        let out = roost_into_closed_pipe(&daemon, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "roost {args:?} into a closed pipe: {:?}, stderr: {stderr}",
            out.status
        );
    }
}

#[test]
fn unreachable_api_says_what_to_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["apps", "list"])
        .env("ROOST_API_URL", "http://127.0.0.1:9")
        .env("ROOST_API_TOKEN", "x")
        .output()
        .expect("run roost");
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("roost up") && message.contains("ROOST_API_URL"),
        "{message}"
    );
}
