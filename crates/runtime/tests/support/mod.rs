//! Test machines: a busybox root filesystem under an overlay, a bundle, a
//! log file, and a guard that force-deletes the container and unmounts the
//! overlay even when the test panics.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use roost_runtime::{
    rootfs, set_child_subreaper, wait_for_exit, write_bundle, BundleConfig, ExecOutput,
    ExecRequest, LogRelay, OciRuntimeKind, Runtime,
};

pub const KINDS: [OciRuntimeKind; 2] = [OciRuntimeKind::Crun, OciRuntimeKind::Runc];

/// Bound of the test machines' logs.
pub const LOG_MAX_BYTES: u64 = 64 * 1024;

/// This crate's own relay program, bounding logs at [`LOG_MAX_BYTES`].
pub fn log_relay() -> LogRelay {
    LogRelay::new(
        env!("CARGO_BIN_EXE_roost-log-relay"),
        [""; 0],
        LOG_MAX_BYTES,
    )
}

/// A prepared (not yet created) machine.
pub struct Machine {
    pub runtime: Runtime,
    pub id: String,
    pub cfg: BundleConfig,
    pub bundle: PathBuf,
    pub log: PathBuf,
    merged: PathBuf,
    init_pid: Option<u32>,
    dir: tempfile::TempDir,
}

impl Machine {
    /// A machine running `args` with `runtime`; `tweak` adjusts the config.
    pub fn new(
        kind: OciRuntimeKind,
        args: &[&str],
        tweak: impl FnOnce(&mut BundleConfig),
    ) -> Machine {
        set_child_subreaper().expect("subreaper");
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("t{}-{n}-{kind}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("roost-rt-test-")
            .tempdir()
            .expect("tempdir");
        let lower = dir.path().join("lower");
        busybox_rootfs(&lower);
        let merged = dir.path().join("merged");
        rootfs::mount_overlay(
            &[lower],
            &dir.path().join("upper"),
            &dir.path().join("work"),
            &merged,
            rootfs::OverlayUse::Machine,
        )
        .expect("mount overlay");
        let runtime = Runtime::new(kind, dir.path().join("state")).expect("runtime installed");
        let mut cfg = BundleConfig {
            hostname: format!("m-{n}"),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec!["GREETING=hello".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            memory_mb: Some(64),
            cpus: Some(1),
            rootfs: merged.clone(),
            cgroup_name: format!("roost-test/{id}"),
            terminal: false,
            mounts: Vec::new(),
            netns: None,
        };
        tweak(&mut cfg);
        let bundle = dir.path().join("bundle");
        write_bundle(&bundle, &cfg).expect("write bundle");
        Machine {
            runtime,
            id,
            cfg,
            bundle,
            log: dir.path().join("machine.log"),
            merged,
            init_pid: None,
            dir,
        }
    }

    pub async fn create(&mut self) -> u32 {
        let pid = self
            .runtime
            .create(&self.id, &self.bundle, &self.log, &log_relay())
            .await
            .expect("create");
        self.init_pid = Some(pid);
        pid
    }

    /// The machine's log once it holds every one of `needles`: the relay
    /// writes it shortly after the machine printed. Panics after 10 s.
    pub async fn log_with(&self, needles: &[&str]) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            if needles.iter().all(|needle| log.contains(needle)) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{needles:?} not in the log after 10 s: {log:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn create_and_start(&mut self) -> u32 {
        let pid = self.create().await;
        self.runtime.start(&self.id).await.expect("start");
        pid
    }

    pub async fn exec(&self, args: &[&str]) -> ExecOutput {
        self.runtime
            .exec(&self.id, &request(args))
            .await
            .unwrap_or_else(|err| panic!("exec {args:?}: {err}"))
    }

    /// Runs `sh -c script` and returns its stdout, asserting success.
    pub async fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]).await;
        assert_eq!(
            out.exit_code,
            0,
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Cgroup directories of this machine that still exist, under any
    /// controller or the v2 tree.
    pub fn leftover_cgroups(&self) -> Vec<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        let mut candidates = vec![root.join(&self.cfg.cgroup_name)];
        for entry in fs::read_dir(root).expect("cgroup root").flatten() {
            candidates.push(entry.path().join(&self.cfg.cgroup_name));
        }
        candidates.into_iter().filter(|p| p.exists()).collect()
    }

    pub fn cgroup_dirs_exist(&self) -> bool {
        !self.leftover_cgroups().is_empty()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let runtime = self.runtime.clone();
        let id = self.id.clone();
        let init_pid = self.init_pid;
        let cgroup = self.cfg.cgroup_name.clone();
        // Drop may run inside a tokio runtime (a panicking async test), where
        // a nested runtime cannot block; a plain thread can.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async {
                // Reap the init while the runtime kills it: a zombie child
                // of this (subreaper) process would otherwise stall runc.
                let reap = async {
                    if let Some(pid) = init_pid {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(15), wait_for_exit(pid)).await;
                    }
                };
                // Everything the machine forked goes first, so the runtime
                // can remove the cgroups.
                let killed = roost_runtime::cgroup::kill_all(&cgroup, Duration::from_secs(15));
                let (killed, ()) = tokio::join!(killed, reap);
                if let Err(err) = killed.and(runtime.delete(&id, true).await) {
                    eprintln!("cleanup of {id} failed: {err}");
                }
            });
        });
        let _ = cleanup.join();
        if let Err(err) = rootfs::unmount(&self.merged) {
            eprintln!("unmount {} failed: {err}", self.merged.display());
        }
    }
}

pub fn request(args: &[&str]) -> ExecRequest {
    ExecRequest {
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        cwd: None,
        uid: 0,
        gid: 0,
        timeout: Duration::from_secs(20),
    }
}

/// A root filesystem with static busybox and one symlink per applet.
pub fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    fs::create_dir_all(&bin).expect("mkdir bin");
    for dir in ["proc", "sys", "dev", "tmp", "etc", "root"] {
        fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static must be installed");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            symlink("busybox", bin.join(applet)).expect("applet symlink");
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .expect("passwd");
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
}
