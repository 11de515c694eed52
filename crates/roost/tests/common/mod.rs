//! A real `roost up` process for end-to-end tests, cleaned up even when a
//! test panics: machines' containers are force-deleted, rootfs mounts
//! detached and the data directory removed.

#![allow(dead_code)] // each test binary uses a different part of the harness

use roost_client::Client;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const APP: &str = "e2e";
pub const IMAGE: &str = "busybox:latest";

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    child: Option<Child>,
    /// More `roost up` flags, e.g. `--insecure-registry`.
    extra_args: Vec<String>,
    /// This daemon's private-network site (`fdaa:<site>::/32`), its own so
    /// concurrent daemons' bridges and service addresses never collide.
    pub site: u16,
    /// Whether roost is given a `--netns-dir` in the test's directory
    /// (otherwise it picks its default for the site, under `/run/roost`).
    own_netns_dir: bool,
    /// roost's `RUST_LOG`.
    log_level: &'static str,
    /// More environment variables of the roost process.
    extra_env: Vec<(String, String)>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

impl Daemon {
    /// Starts roost on a fresh data dir with the busybox image imported
    /// and the app [`APP`] created.
    pub async fn start() -> Daemon {
        Daemon::start_with_args(&[]).await
    }

    /// [`Daemon::start`] with more `roost up` flags.
    pub async fn start_with_args(args: &[&str]) -> Daemon {
        Daemon::start_configured(args, true, "info", &[]).await
    }

    /// [`Daemon::start`] without `--netns-dir`: roost uses its default
    /// for the site (removed again by the teardown).
    pub async fn start_with_default_netns_dir() -> Daemon {
        Daemon::start_configured(&[], false, "info", &[]).await
    }

    /// [`Daemon::start`] logging at `level` (`RUST_LOG`).
    pub async fn start_with_log_level(level: &'static str) -> Daemon {
        Daemon::start_configured(&[], true, level, &[]).await
    }

    /// [`Daemon::start`] with more environment variables for roost.
    pub async fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        Daemon::start_configured(&[], true, "info", env).await
    }

    async fn start_configured(
        args: &[&str],
        own_netns_dir: bool,
        log_level: &'static str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut daemon = Daemon {
            dir,
            url: format!("http://127.0.0.1:{}", free_port()),
            token: String::new(),
            child: None,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            site: free_site(),
            own_netns_dir,
            log_level,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        daemon.spawn(None).await;
        let layout = roost_testkit::busybox_layout(daemon.dir.path());
        daemon
            .client()
            .import_image(&layout.to_string_lossy(), IMAGE)
            .await
            .expect("import busybox");
        daemon.client().create_app(APP).await.expect("create app");
        daemon
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where this daemon keeps its machines' network namespace files
    /// (outside the data dir, like `/run/roost/netns`).
    pub fn netns_dir(&self) -> PathBuf {
        if self.own_netns_dir {
            self.dir.path().join("netns")
        } else {
            roost_net::default_netns_dir(self.site)
        }
    }

    /// This daemon's private network, for inspection and teardown.
    pub fn network(&self) -> roost_net::Network {
        roost_net::Network::new(roost_net::NetConfig {
            site: self.site,
            netns_dir: self.netns_dir(),
            ..Default::default()
        })
        .expect("network config")
    }

    /// The `roost` CLI with `args`, pointed at this daemon and reading its
    /// admin token from the data dir (not from the caller's environment).
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roost"));
        command
            .args(args)
            .env("ROOST_API_URL", &self.url)
            .env("ROOST_DATA_DIR", self.data_dir())
            .env_remove("ROOST_API_TOKEN");
        command
    }

    /// (Re)starts the roost process, optionally with `ROOST_CRASH_AT`.
    pub async fn spawn(&mut self, crash_at: Option<&str>) {
        let addr = self.url.trim_start_matches("http://").to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_roost"));
        command
            .args(["up", "--no-install", "--api-listen", &addr, "--data-dir"])
            .arg(self.data_dir())
            .arg("--network-site")
            .arg(self.site.to_string())
            .args(&self.extra_args)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", self.log_level)
            // Concurrent daemons must not fight over the S3 default port;
            // tests that use S3 pass --s3-listen.
            .env("ROOST_S3_LISTEN", "127.0.0.1:0")
            // Likewise the tokenizer's; tests that use it pass --tokenizer-listen.
            .env("ROOST_TOKENIZER_LISTEN", "127.0.0.1:0")
            // And the edge proxy's (8080); tests that use it pass --proxy-listen.
            .env("ROOST_PROXY_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("roost.log"))
                    .expect("daemon log"),
            );
        if self.own_netns_dir {
            command.arg("--netns-dir").arg(self.netns_dir());
        }
        match crash_at {
            Some(point) => command.env("ROOST_CRASH_AT", point),
            None => command.env_remove("ROOST_CRASH_AT"),
        };
        self.child = Some(command.spawn().expect("spawn roost up"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(token) = std::fs::read_to_string(self.data_dir().join("admin-token")) {
                self.token = token.trim().to_string();
                if self.client().list_apps().await.is_ok() {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("roost up exited early ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "roost up not ready after 30s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the roost process to die (after a crash point) and reaps it.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        child.wait().expect("wait roost")
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, &self.token)
    }

    /// The pid of the running roost process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("roost.log")).unwrap_or_default()
    }

    /// Raw HTTP access for status-code checks.
    pub fn http(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        cleanup_host_state(&self.data_dir());
        if let Err(err) = self.network().teardown_blocking() {
            eprintln!("private network teardown failed: {err}");
        }
    }
}

/// A private-network site no other daemon on this host uses: random, and
/// checked against the host's bridges and loopback addresses.
pub fn free_site() -> u16 {
    static DRAWS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let draw = DRAWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mixed =
            (nanos ^ (nanos >> 16) ^ std::process::id()).wrapping_add(draw.wrapping_mul(0x9e37));
        let site = (mixed as u16) | 0x100;
        let in_use = !bridges_of_site(site).is_empty()
            || std::fs::read_to_string("/proc/net/if_inet6")
                .unwrap_or_default()
                .lines()
                .any(|line| line.starts_with(&format!("fdaa{site:04x}")));
        if !in_use {
            return site;
        }
    }
}

/// Names of the host's bridges of private-network site `site`.
pub fn bridges_of_site(site: u16) -> Vec<String> {
    let prefix = format!("rb-{site:04x}-");
    std::fs::read_dir("/sys/class/net")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the host has a network interface called `name`.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Removes every container, mount and cgroup roost created under `data_dir`.
pub fn cleanup_host_state(data_dir: &Path) {
    for runtime in ["crun", "runc"] {
        let root = data_dir.join("runtime").join(runtime);
        for id in leftover_containers(data_dir, runtime) {
            let _ = Command::new(runtime)
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", &id])
                .stderr(Stdio::null())
                .status();
        }
    }
    for mount in mounts_under(data_dir) {
        let _ = nix::mount::umount2(mount.as_path(), nix::mount::MntFlags::MNT_DETACH);
    }
    for device in loop_devices_under(data_dir) {
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&device)
            .stderr(Stdio::null())
            .status();
    }
}

/// Loop devices whose backing file lies under `dir` (volume images).
pub fn loop_devices_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|backing| Path::new(backing.trim_end()).starts_with(dir))
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect()
}

/// Loop devices under `dir` that are still attached after `secs` seconds.
/// A machine's mount namespace holds its volumes' filesystems until the
/// kernel frees the namespace, a moment after the machine's last process
/// exits; `losetup -d` on a device still in use only marks it to be
/// released then. So a device may outlive a `stopped` state briefly.
pub async fn loop_devices_left_under(dir: &Path, secs: u64) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = loop_devices_under(dir);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Container ids in `runtime`'s state dir under `data_dir`.
pub fn leftover_containers(data_dir: &Path, runtime: &str) -> Vec<String> {
    let root = data_dir.join("runtime").join(runtime);
    std::fs::read_dir(&root)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|mount| mount.starts_with(dir))
        .collect()
}

/// Cgroup directories named after `machine_id` under any controller.
pub fn cgroups_of(machine_id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for controller in controllers.filter_map(|e| e.ok()) {
        let candidate = controller.path().join("roost").join(machine_id);
        if candidate.exists() {
            found.push(candidate);
        }
    }
    let unified = Path::new("/sys/fs/cgroup/roost").join(machine_id);
    if unified.exists() {
        found.push(unified);
    }
    found
}

/// Processes whose command line mentions `needle` (e.g. a machine id).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmd| String::from_utf8_lossy(&cmd).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// A machine config running `script` under `sh -c` in the test image.
pub fn sh_config(script: &str) -> roost_types::MachineConfig {
    roost_types::MachineConfig {
        image: IMAGE.into(),
        init: Some(roost_types::MachineInit {
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Standard base64 (with padding) of `bytes`, as Fly's `files.raw_value` wants.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Daemon {
    /// Sends `body` (if any) as JSON and returns the status and the JSON
    /// response (`Null` when the body is empty, a string when it is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("roost reachable");
        let status = response.status().as_u16();
        let text = response.text().await.expect("response body");
        let value = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, value)
    }

    /// Runs `script` under `sh -c` in machine `id` of [`APP`].
    pub async fn sh(&self, id: &str, script: &str) -> roost_types::ExecResponse {
        self.client()
            .exec(
                APP,
                id,
                &roost_types::ExecRequest {
                    command: vec!["sh".into(), "-c".into(), script.into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("exec {script:?} in {id}: {e}"))
    }

    /// Runs `script` under `sh -c` in machine `id` of `app`, for at most 30 s.
    pub async fn sh_in(&self, app: &str, id: &str, script: &str) -> roost_types::ExecResponse {
        self.client()
            .exec(
                app,
                id,
                &roost_types::ExecRequest {
                    command: vec!["sh".into(), "-c".into(), script.into()],
                    timeout: Some(30),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("exec {script:?} in {id} of {app}: {e}"))
    }

    /// The current state of machine `id` of [`APP`].
    pub async fn state(&self, id: &str) -> roost_types::MachineState {
        self.client()
            .get_machine(APP, id)
            .await
            .expect("get machine")
            .state
    }

    /// No volume is mounted or has a loop device unless a started machine mounts it.
    pub async fn check_no_volume_leaks(&self, point: &str) {
        let data = self.data_dir();
        let machines = self.client().list_machines(APP).await.expect("machines");
        let in_use: Vec<String> = machines
            .iter()
            .filter(|m| m.state == roost_types::MachineState::Started)
            .flat_map(|m| m.config.mounts.iter().map(|v| v.volume.clone()))
            .collect();
        // Machines' rootfs disks (under `machines/`) stay attached until destroy.
        for device in loop_devices_under(&data.join("volumes")) {
            let backing = std::fs::read_to_string(
                std::path::Path::new("/sys/block")
                    .join(device.file_name().expect("name"))
                    .join("loop/backing_file"),
            )
            .unwrap_or_default();
            assert!(
                in_use.iter().any(|v| backing.contains(v.as_str())),
                "{point}: loop device {} ({backing}) leaked",
                device.display()
            );
        }
        for mount in mounts_under(&data.join("volumes")) {
            assert!(
                in_use
                    .iter()
                    .any(|v| mount.to_string_lossy().contains(v.as_str())),
                "{point}: mount {} leaked",
                mount.display()
            );
        }
    }

    /// Waits (bounded by `secs`) for machine `id` of [`APP`] to reach `state`.
    pub async fn wait_state(&self, id: &str, state: &str, secs: u64) {
        if let Err(e) = self.client().wait(APP, id, state, secs).await {
            panic!(
                "machine {id} did not reach {state} in {secs}s: {e}\n{}",
                self.log()
            );
        }
    }
}

/// Runs the Python program `script` with `args` (`sys.argv[1:]`), asserting
/// that it succeeds; returns its stdout.
pub async fn python(script: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .await
        .expect("run python3");
    assert!(
        output.status.success(),
        "python failed:\n{script}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Runs `command` (e.g. a [`Daemon::cli`]), asserting that it succeeds;
/// returns its stdout.
pub fn stdout_of(command: &mut Command) -> String {
    let out = command.output().expect("run the command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}
