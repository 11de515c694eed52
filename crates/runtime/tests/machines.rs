//! End-to-end tests against the real crun and runc of this host. They need
//! root, both runtimes, tini-static and busybox-static.

mod support;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use roost_runtime::{
    cgroup_mode, processes, wait_for_exit, CgroupMode, ContainerStatus, ExecRequest,
    OciRuntimeKind, Runtime, RuntimeError,
};
use support::{log_relay, request, Machine, KINDS, LOG_MAX_BYTES};

#[tokio::test]
async fn lifecycle_with_both_runtimes() {
    for kind in KINDS {
        let mut m = Machine::new(kind, &["sleep", "1000"], |_| {});
        let started = Instant::now();
        let pid = m.create().await;
        let created = m.runtime.state(&m.id).await.expect("state").expect("known");
        assert_eq!(created.status, ContainerStatus::Created, "{kind}");
        assert_eq!(created.pid, Some(pid), "{kind}");

        m.runtime.start(&m.id).await.expect("start");
        eprintln!(
            "{kind}: create+start through the driver took {:?}",
            started.elapsed()
        );
        let running = m.runtime.state(&m.id).await.expect("state").expect("known");
        assert_eq!(running.status, ContainerStatus::Running, "{kind}");
        assert!(
            m.runtime.list().await.expect("list").contains(&m.id),
            "{kind}"
        );
        assert!(m.cgroup_dirs_exist(), "{kind}: cgroups exist while running");

        m.runtime.pause(&m.id).await.expect("pause");
        let paused = m.runtime.state(&m.id).await.expect("state").expect("known");
        assert_eq!(paused.status, ContainerStatus::Paused, "{kind}");
        m.runtime.resume(&m.id).await.expect("resume");

        m.runtime.kill(&m.id, Signal::SIGTERM).await.expect("kill");
        let code = wait_for_exit(pid).await.expect("wait");
        assert_eq!(
            code,
            Some(128 + Signal::SIGTERM as i32),
            "{kind}: tini reports the signal"
        );
        let stopped = m.runtime.state(&m.id).await.expect("state").expect("known");
        assert_eq!(stopped.status, ContainerStatus::Stopped, "{kind}");
        m.runtime
            .kill(&m.id, Signal::SIGKILL)
            .await
            .expect("killing a stopped container is fine");

        m.runtime.delete(&m.id, false).await.expect("delete");
        assert_eq!(m.runtime.state(&m.id).await.expect("state"), None, "{kind}");
        m.runtime
            .delete(&m.id, false)
            .await
            .expect("delete is idempotent");
        m.runtime
            .delete(&m.id, true)
            .await
            .expect("delete is idempotent");
        assert!(
            !m.runtime.list().await.expect("list").contains(&m.id),
            "{kind}"
        );
        assert_eq!(
            m.leftover_cgroups(),
            Vec::<PathBuf>::new(),
            "{kind}: cgroups removed"
        );
        assert!(
            !m.scratch().join("state").join(&m.id).exists(),
            "{kind}: state removed"
        );
    }
}

#[tokio::test]
async fn force_delete_of_a_running_machine_leaves_nothing() {
    for kind in KINDS {
        let mut m = Machine::new(kind, &["sleep", "1000"], |_| {});
        let pid = m.create_and_start().await;
        m.runtime.delete(&m.id, true).await.expect("force delete");
        assert_eq!(
            wait_for_exit(pid).await.expect("wait"),
            Some(128 + Signal::SIGKILL as i32),
            "{kind}"
        );
        assert_eq!(m.runtime.state(&m.id).await.expect("state"), None, "{kind}");
        assert_eq!(
            m.leftover_cgroups(),
            Vec::<PathBuf>::new(),
            "{kind}: cgroups removed"
        );
    }
}

#[tokio::test]
async fn exit_code_and_output_reach_the_caller_and_the_log() {
    for kind in KINDS {
        let mut m = Machine::new(
            kind,
            &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 42"],
            |_| {},
        );
        let pid = m.create_and_start().await;
        assert_eq!(wait_for_exit(pid).await.expect("wait"), Some(42), "{kind}");
        m.log_with(&["to-stdout", "to-stderr"]).await;
        let mode = fs::metadata(&m.log).expect("log").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o640
        );
        m.runtime.delete(&m.id, false).await.expect("delete");
    }
}

#[tokio::test]
async fn security_output_past_the_bound_rotates_the_log_and_keeps_the_newest() {
    for kind in KINDS {
        // 1 MB of output, then a last line, through a 64 KiB bound.
        let mut m = Machine::new(
            kind,
            &["sh", "-c", "yes | head -c 1000000; echo last-line"],
            |_| {},
        );
        let pid = m.create_and_start().await;
        assert_eq!(wait_for_exit(pid).await.expect("wait"), Some(0), "{kind}");
        let log = m.log_with(&["last-line"]).await;
        assert!(log.ends_with("y\nlast-line\n"), "{kind}: {log:.80}");
        let rotated = roost_runtime::logs::rotated_path(&m.log);
        for file in [&m.log, &rotated] {
            let size = fs::metadata(file).expect("log file").len();
            assert!(
                size <= LOG_MAX_BYTES,
                "{kind}: {} is {size} bytes",
                file.display()
            );
        }
        m.runtime.delete(&m.id, false).await.expect("delete");
    }
}

#[tokio::test]
async fn security_kill_all_ends_a_fork_bomb_and_its_cgroups() {
    let bomb = "bomb() { bomb | bomb & }; bomb; exec sleep 1000";
    kill_all_leaves_nothing(bomb, 200, Paused::No).await;
}

/// A paused machine is frozen: a SIGKILL to its init alone never takes
/// effect, through the cgroup it does (and the cgroup is thawed after).
/// The machine runs many quiet processes, not a fork bomb: a runtime's
/// `pause` may give up on a cgroup that forks faster than it freezes.
#[tokio::test]
async fn security_kill_all_ends_a_frozen_machine() {
    let quiet = "for i in $(seq 50); do sleep 1000 & done; exec sleep 1000";
    kill_all_leaves_nothing(quiet, 51, Paused::Yes).await;
}

/// Whether [`kill_all_leaves_nothing`] pauses the machine before the kill.
#[derive(PartialEq)]
enum Paused {
    Yes,
    No,
}

/// Runs `script` in a machine of each runtime until its cgroup holds
/// `processes`, kills them all through the cgroup, and checks that none is
/// left and that delete removes the cgroup.
async fn kill_all_leaves_nothing(script: &str, processes: usize, paused: Paused) {
    for kind in KINDS {
        let mut m = Machine::new(kind, &["sh", "-c", script], |_| {});
        m.create_and_start().await;
        let procs = ProcessCount::of(&m.cfg.cgroup_name);
        procs.wait_for(kind, processes).await;
        if paused == Paused::Yes {
            m.runtime.pause(&m.id).await.expect("pause");
        }
        roost_runtime::cgroup::kill_all(&m.cfg.cgroup_name, Duration::from_secs(10))
            .await
            .expect("kill every process");
        procs.assert_empty_and_removed_by(kind, &m).await;
    }
}

/// The processes of a machine's cgroup, as the pids controller lists them.
struct ProcessCount {
    procs: PathBuf,
}

impl ProcessCount {
    /// The pids controller's copy: v1 (legacy, hybrid) or the v2 tree.
    fn of(cgroup: &str) -> ProcessCount {
        let procs = [
            PathBuf::from("/sys/fs/cgroup/pids"),
            PathBuf::from("/sys/fs/cgroup"),
        ]
        .iter()
        .map(|root| root.join(cgroup).join("cgroup.procs"))
        .find(|procs| procs.exists())
        .expect("the machine's cgroup");
        ProcessCount { procs }
    }

    fn count(&self) -> usize {
        fs::read_to_string(&self.procs)
            .map(|p| p.lines().count())
            .unwrap_or(0)
    }

    /// Waits (at most 20 s) until the cgroup holds at least `wanted` processes.
    async fn wait_for(&self, kind: OciRuntimeKind, wanted: usize) {
        let waiting = Instant::now();
        while self.count() < wanted && waiting.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            self.count() >= wanted,
            "{kind}: the machine reached only {} processes",
            self.count()
        );
    }

    /// Asserts that no process is left, then deletes the machine and
    /// asserts that its cgroup went with it.
    async fn assert_empty_and_removed_by(&self, kind: OciRuntimeKind, m: &Machine) {
        assert_eq!(self.count(), 0, "{kind}: processes left");
        m.runtime.delete(&m.id, true).await.expect("delete");
        assert!(!self.procs.exists(), "{kind}: the cgroup was removed");
    }
}

#[tokio::test]
async fn exec_runs_commands_inside_the_machine() {
    for kind in KINDS {
        let mut m = Machine::new(kind, &["sleep", "1000"], |_| {});
        m.create_and_start().await;

        let out = m
            .exec(&["sh", "-c", "echo out; echo err >&2; exit 3"])
            .await;
        assert_eq!(out.stdout, b"out\n", "{kind}");
        assert_eq!(out.stderr, b"err\n", "{kind}");
        assert_eq!(out.exit_code, 3, "{kind}");

        let listing = m.exec(&["ls", "-a", "/.roost"]).await;
        assert!(
            String::from_utf8_lossy(&listing.stdout).contains("init"),
            "{kind}: option-like args pass through"
        );

        let req = ExecRequest {
            env: vec!["FOO=bar baz".into()],
            cwd: Some("/tmp".into()),
            uid: 65534,
            gid: 65534,
            ..request(&["sh", "-c", "echo \"$FOO\"; pwd; id -u; id -g"])
        };
        let out = m.runtime.exec(&m.id, &req).await.expect("exec");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "bar baz\n/tmp\n65534\n65534\n",
            "{kind}"
        );

        // The process file gives an exec'd command exactly the privileges
        // of the machine's init: capabilities, no_new_privs, open-file limit.
        let privileges = |pid: &str| {
            format!(
                "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/{pid}/status; \
                 grep 'open files' /proc/{pid}/limits"
            )
        };
        let exec_privileges = m.sh(&privileges("self")).await;
        let init_privileges = m.sh(&privileges("1")).await;
        assert_eq!(exec_privileges, init_privileges, "{kind}");
        assert!(
            exec_privileges.contains("NoNewPrivs:\t1"),
            "{kind}: {exec_privileges}"
        );

        let missing = m.runtime.exec(&m.id, &request(&["/no/such/binary"])).await;
        match missing {
            Err(RuntimeError::NotStarted { reason }) => {
                assert!(reason.contains("/no/such/binary"), "{kind}: {reason}")
            }
            other => panic!("{kind}: a missing program is not started: {other:?}"),
        }

        let slow = ExecRequest {
            timeout: Duration::from_millis(500),
            ..request(&["sleep", "300"])
        };
        let started = Instant::now();
        let err = m
            .runtime
            .exec(&m.id, &slow)
            .await
            .expect_err("must time out");
        assert!(matches!(err, RuntimeError::Timeout { .. }), "{kind}: {err}");
        assert!(started.elapsed() < Duration::from_secs(10), "{kind}");
        // The killed process may linger briefly as a zombie (state Z).
        let ps = m.sh("ps -o stat,args").await;
        assert!(
            !ps.lines()
                .any(|l| l.contains("sleep 300") && !l.starts_with('Z')),
            "{kind}: the timed-out command was killed: {ps}"
        );

        // runc waits for every holder of the output pipes; see Runtime::exec.
        let script = match kind {
            OciRuntimeKind::Crun => "sleep 300 & echo started",
            OciRuntimeKind::Runc => "sleep 300 >/dev/null 2>&1 & echo started",
        };
        let started = Instant::now();
        let background = m.exec(&["sh", "-c", script]).await;
        assert_eq!(background.stdout, b"started\n", "{kind}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{kind}: a background child does not block exec"
        );
    }
}

#[tokio::test]
async fn resource_limits_are_visible_and_enforced() {
    for kind in KINDS {
        let mut m = Machine::new(kind, &["sleep", "1000"], |cfg| {
            cfg.memory_mb = Some(48);
            cfg.cpus = Some(1);
        });
        m.create_and_start().await;
        let (memory, cpu) = match cgroup_mode().expect("mode") {
            CgroupMode::Unified => ("cat /sys/fs/cgroup/memory.max", "cat /sys/fs/cgroup/cpu.max"),
            _ => (
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
                "cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            ),
        };
        assert_eq!(
            m.sh(memory).await.trim(),
            (48u64 << 20).to_string(),
            "{kind}"
        );
        assert!(m.sh(cpu).await.starts_with("100000"), "{kind}");
        assert_eq!(m.sh("hostname").await.trim(), m.cfg.hostname, "{kind}");

        let hog = m
            .exec(&["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"])
            .await;
        assert_eq!(
            hog.exit_code,
            128 + Signal::SIGKILL as i32,
            "{kind}: OOM-killed: {hog:?}"
        );
        assert_eq!(
            m.sh("echo alive").await,
            "alive\n",
            "{kind}: the machine survives"
        );
    }
}

#[tokio::test]
async fn machines_are_isolated_from_the_host() {
    let marker = tempfile::tempdir().expect("tempdir");
    fs::write(marker.path().join("host-secret"), "x").expect("marker");
    for kind in KINDS {
        let mut m = Machine::new(kind, &["sleep", "1000"], |_| {});
        m.create_and_start().await;

        let ps = m.sh("ps -o pid,comm").await;
        let pids: Vec<&str> = ps
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(pids.first(), Some(&"1"), "{kind}: {ps}");
        assert!(
            pids.len() <= 4,
            "{kind}: only the machine's processes: {ps}"
        );
        assert!(
            !ps.contains("cargo") && !ps.contains("process_api"),
            "{kind}: {ps}"
        );

        let secret = marker.path().join("host-secret");
        let cat = m.exec(&["cat", &secret.display().to_string()]).await;
        assert_ne!(cat.exit_code, 0, "{kind}: host files are invisible");

        let mount = m.exec(&["mount", "-t", "tmpfs", "none", "/mnt"]).await;
        assert_ne!(mount.exit_code, 0, "{kind}");
        assert!(
            String::from_utf8_lossy(&mount.stderr).contains("permission denied"),
            "{kind}: {mount:?}"
        );

        m.sh("echo junk > /tmp/evil.ko").await;
        let insmod = m.exec(&["insmod", "/tmp/evil.ko"]).await;
        assert_ne!(insmod.exit_code, 0, "{kind}");
        assert!(
            String::from_utf8_lossy(&insmod.stderr).contains("not permitted"),
            "{kind}: {insmod:?}"
        );

        let ping = m.exec(&["ping", "-c", "1", "-W", "1", "127.0.0.1"]).await;
        assert_ne!(
            ping.exit_code, 0,
            "{kind}: raw sockets are denied: {ping:?}"
        );

        let unshare = m.exec(&["unshare", "-U", "true"]).await;
        assert_ne!(unshare.exit_code, 0, "{kind}: no user namespaces");

        let status = m
            .sh("grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status")
            .await;
        assert!(status.contains("Seccomp:\t2"), "{kind}: {status}");
        assert!(status.contains("NoNewPrivs:\t1"), "{kind}: {status}");
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .expect("CapEff");
        assert_eq!(cap_eff & (1 << 13), 0, "{kind}: CAP_NET_RAW dropped");
        assert_eq!(cap_eff & (1 << 21), 0, "{kind}: CAP_SYS_ADMIN dropped");

        let links = m.sh("ip -o link 2>/dev/null || ls /sys/class/net").await;
        assert!(
            links.contains("lo") && !links.contains("eth"),
            "{kind}: loopback only: {links}"
        );
    }
}

#[tokio::test]
async fn processes_lists_the_machine_with_in_machine_pids() {
    for kind in KINDS {
        let mut m = Machine::new(kind, &["httpd", "-f", "-p", "8080"], |cfg| {
            cfg.cwd = "/tmp".into()
        });
        let pid = m.create_and_start().await;
        let mut procs = processes(pid).expect("processes");
        for _ in 0..50 {
            if procs.iter().any(|p| !p.listen_sockets.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            procs = processes(pid).expect("processes");
        }
        let init = procs.iter().find(|p| p.pid == 1).expect("init listed");
        assert!(
            init.command.starts_with("/.roost/init -- httpd"),
            "{kind}: {init:?}"
        );
        let httpd = procs
            .iter()
            .find(|p| p.command == "httpd -f -p 8080")
            .expect("httpd listed");
        assert_eq!(
            m.sh("pidof httpd").await.trim(),
            httpd.pid.to_string(),
            "{kind}: {procs:?}"
        );
        assert_eq!(httpd.directory, "/tmp", "{kind}");
        assert!(httpd.rss > 0, "{kind}");
        assert!(
            httpd
                .listen_sockets
                .iter()
                .any(|(proto, addr)| proto == "tcp" && addr.ends_with(":8080")),
            "{kind}: {httpd:?}"
        );
        assert_eq!(
            processes(pid).expect("processes").len(),
            2,
            "{kind}: {procs:?}"
        );
    }
}

#[tokio::test]
async fn error_paths_are_reported_clearly() {
    let state = tempfile::tempdir().expect("tempdir");
    let missing = Runtime::with_binary(
        OciRuntimeKind::Crun,
        "/nonexistent/crun".into(),
        state.path().join("s"),
    );
    let err = missing.expect_err("missing binary");
    assert!(matches!(err, RuntimeError::NotInstalled { .. }), "{err}");
    assert!(err.to_string().contains("Debian package `crun`"), "{err}");

    for kind in KINDS {
        let runtime = Runtime::new(kind, state.path().join(kind.to_string())).expect("runtime");
        let start = runtime.start("nope").await.expect_err("unknown");
        assert!(
            matches!(start, RuntimeError::NotFound { .. }),
            "{kind}: {start}"
        );
        assert_eq!(runtime.state("nope").await.expect("state"), None, "{kind}");
        let kill = runtime
            .kill("nope", Signal::SIGTERM)
            .await
            .expect_err("unknown");
        assert!(
            matches!(kill, RuntimeError::NotFound { .. }),
            "{kind}: {kill}"
        );
        runtime
            .delete("nope", true)
            .await
            .expect("delete of unknown is Ok");
        let exec = runtime
            .exec("nope", &request(&["true"]))
            .await
            .expect_err("unknown");
        assert!(
            matches!(exec, RuntimeError::NotFound { .. }),
            "{kind}: {exec}"
        );
        let bad_id = runtime.start("--all").await.expect_err("bad id");
        assert!(
            matches!(bad_id, RuntimeError::InvalidInput { .. }),
            "{kind}: {bad_id}"
        );

        let empty_bundle = tempfile::tempdir().expect("tempdir");
        let log = empty_bundle.path().join("log");
        let create = runtime
            .create("badbundle", empty_bundle.path(), &log, &log_relay())
            .await
            .expect_err("no config.json");
        match &create {
            RuntimeError::CommandFailed { stderr, .. } => {
                assert!(stderr.contains("config.json"), "{kind}: {create}")
            }
            other => panic!("{kind}: unexpected {other}"),
        }
        assert!(
            runtime.list().await.expect("list").is_empty(),
            "{kind}: nothing left behind"
        );
    }

    let mut m = Machine::new(OciRuntimeKind::Crun, &["/no/such/entrypoint"], |_| {});
    let pid = m.create_and_start().await;
    assert_eq!(
        wait_for_exit(pid).await.expect("wait"),
        Some(127),
        "tini reports a missing entrypoint"
    );
}
