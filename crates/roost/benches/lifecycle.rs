//! Machine lifecycle latency: roost against the tools it is built from.
//!
//! roost promises that starting a stopped machine costs little more than
//! asking the OCI runtime to run an already-prepared bundle, and far less
//! than podman's start of a stopped container. Those claims only mean
//! something when all three are measured on the same host, in the same run,
//! on the same root filesystem, so this benchmark runs them interleaved: each
//! iteration does one full roost cycle, one raw crun cycle and one podman
//! cycle, which spreads the host's background noise over all three alike.
//!
//! * **roost**: a real `roost up` child process (the binary cargo built for
//!   this bench profile) on a temporary data dir and a free loopback port,
//!   driven over the Fly Machines API with roost's own client.
//! * **crun**: `crun create` + `crun start` of a bundle made with
//!   `crun spec`, edited to run `sleep 1000` on the busybox tree with
//!   roost's namespaces: the runtime work roost's start of a stopped machine
//!   delegates, on a plain bundle (roost's own bundle adds tini, a seccomp
//!   profile, masked paths and resource limits).
//! * **podman**: `podman create --rootfs` of the same tree, with private
//!   storage under the temporary dir so nothing of the host's podman state
//!   is touched.
//!
//! Debian's crun refuses hybrid cgroup hosts, so roost runs every crun in a
//! private mount namespace without `/sys/fs/cgroup/unified`, set up between
//! fork and exec. This benchmark does the same for its own crun and podman
//! calls (podman's crun inherits the namespace through conmon), so all three
//! pay the same price for it; that price is measured and printed separately.
//!
//! Run with `cargo bench -p roost --bench lifecycle [-- --iterations N]`.
//! To see where roost's own time goes, add `--daemon-log PATH` and run with
//! `RUST_LOG=debug` (passed on to the daemon): its log then has the elapsed
//! time of every runtime command.
//! Timings use [`Instant`] around the API call or the runtime command only;
//! the checks that a process really runs happen outside the timed region.
//! Every loop is bounded, and everything created (roost's daemon, machines
//! and mounts, crun containers, podman containers, temporary dirs) is
//! removed at the end, also when a step fails or panics.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use roost_client::Client;
use roost_types::{
    CreateMachineRequest, ExecRequest, MachineConfig, MachineInit, MachineState, StopRequest,
};
use serde_json::Value;

/// Iterations per system when `--iterations` is not given: enough for a
/// stable median, and p99 is then simply the worst sample.
const DEFAULT_ITERATIONS: usize = 30;

const APP: &str = "bench";
const IMAGE: &str = "busybox:latest";

/// Upper bound for one external command; crun calls take tens of
/// milliseconds and podman's a few hundred, so a minute means it hangs.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a started process may take to show up as `sleep` in `/proc`.
const RUNNING_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `roost up` may take to answer its first API call.
const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Targets the start path is measured against, printed next to the results.
const TARGET_START_VS_CRUN: f64 = 1.3;
const TARGET_PODMAN_VS_START: f64 = 5.0;
const TARGET_API_MS: f64 = 2.0;

/// Where systemd mounts the v2 hierarchy on hybrid hosts; a C string because
/// it is used between fork and exec, where nothing may allocate.
const HYBRID_UNIFIED: &std::ffi::CStr = c"/sys/fs/cgroup/unified";

struct Options {
    iterations: usize,
    /// Keep the daemon's log here instead of in the temporary dir, e.g. to
    /// read its `RUST_LOG=debug` step timings afterwards.
    daemon_log: Option<PathBuf>,
}

impl Options {
    fn parse() -> Result<Options> {
        let mut options = Options {
            iterations: DEFAULT_ITERATIONS,
            daemon_log: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                // cargo bench passes this to every harness = false bench.
                "--bench" => {}
                "--iterations" => {
                    let value = args.next().context("--iterations needs a number")?;
                    options.iterations =
                        value.parse().ok().filter(|&n| n > 0).with_context(|| {
                            format!("--iterations {value:?}: use a positive integer")
                        })?;
                }
                "--daemon-log" => {
                    options.daemon_log =
                        Some(args.next().context("--daemon-log needs a path")?.into());
                }
                other => {
                    bail!("unknown argument {other:?}; allowed: --iterations N, --daemon-log PATH")
                }
            }
        }
        Ok(options)
    }
}

/// Durations of one operation, one per iteration.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn push(&mut self, elapsed: Duration) {
        self.0.push(elapsed);
    }

    fn sorted_ms(&self) -> Vec<f64> {
        let mut ms: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        ms
    }

    fn median_ms(&self) -> f64 {
        let ms = self.sorted_ms();
        let mid = ms.len() / 2;
        if ms.len() % 2 == 1 {
            ms[mid]
        } else {
            (ms[mid - 1] + ms[mid]) / 2.0
        }
    }

    /// Nearest-rank p99: the smallest sample with at least 99% of samples
    /// at or below it.
    fn p99_ms(&self) -> f64 {
        let ms = self.sorted_ms();
        let rank = (0.99 * ms.len() as f64).ceil() as usize;
        ms[rank.clamp(1, ms.len()) - 1]
    }
}

#[derive(Default)]
struct RoostSamples {
    create: Samples,
    get: Samples,
    exec: Samples,
    stop: Samples,
    start: Samples,
    destroy: Samples,
}

#[derive(Default)]
struct CrunSamples {
    create: Samples,
    start: Samples,
    create_start: Samples,
    exec: Samples,
    kill_delete: Samples,
}

#[derive(Default)]
struct PodmanSamples {
    /// `podman create` followed by the first `podman start`.
    create_start: Samples,
    exec: Samples,
    stop: Samples,
    /// `podman start` of a stopped container.
    start: Samples,
    destroy: Samples,
}

#[derive(Default)]
struct HookSamples {
    plain: Samples,
    private_ns: Samples,
}

#[derive(Default)]
struct Results {
    roost: RoostSamples,
    crun: CrunSamples,
    podman: PodmanSamples,
    hook: HookSamples,
}

/// Owns everything the benchmark creates and removes it on drop, which also
/// runs when a step panics.
struct Bench {
    tmp: tempfile::TempDir,
    iterations: usize,
    daemon_log: PathBuf,
    daemon: Option<Child>,
    url: String,
    token: String,
    /// Whether runtime calls need the private mount namespace (hybrid host).
    hybrid: bool,
    rootfs: PathBuf,
    bundle: PathBuf,
    /// Podman container names created so far, for cleanup.
    podman_names: Vec<String>,
    /// The daemon's private network (its own site and namespace dir under
    /// the temporary dir), torn down at the end.
    network: roost_net::Network,
}

impl Bench {
    fn new(options: Options) -> Result<Bench> {
        let tmp = tempfile::Builder::new()
            .prefix("roost-bench-")
            .tempdir()
            .context("cannot create a temporary dir")?;
        let daemon_log = options
            .daemon_log
            .unwrap_or_else(|| tmp.path().join("roost.log"));
        let rootfs = roost_testkit::busybox_rootfs(tmp.path());
        let bundle = tmp.path().join("crun-bundle");
        let network = roost_net::Network::new(roost_net::NetConfig {
            site: bench_site(),
            netns_dir: tmp.path().join("netns"),
            ..Default::default()
        })?;
        let bench = Bench {
            iterations: options.iterations,
            daemon_log,
            daemon: None,
            url: String::new(),
            token: String::new(),
            hybrid: hybrid_cgroups(),
            rootfs,
            bundle,
            podman_names: Vec::new(),
            network,
            tmp,
        };
        Ok(bench)
    }

    fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn roost_crun_root(&self) -> PathBuf {
        self.data_dir().join("runtime").join("crun")
    }

    fn crun_root(&self) -> PathBuf {
        self.tmp.path().join("crun-root")
    }

    fn client(&self) -> Client {
        Client::new(&self.url, &self.token)
    }

    async fn run(&mut self) -> Result<Results> {
        self.start_daemon().await?;
        self.write_crun_bundle().await?;
        let mut results = Results::default();
        // One untimed cycle each: the first run of anything pays for cold
        // page cache and lazily created state (cgroup parents, podman's DB).
        // One client for the whole run, so its keep-alive connection is
        // reused and no timed call pays for a TCP handshake.
        let client = self.client();
        let mut warmup = Results::default();
        self.roost_cycle(&client, &mut warmup.roost).await?;
        self.crun_cycle("warmup", &mut warmup.crun).await?;
        self.podman_cycle("warmup", &mut warmup.podman).await?;
        for i in 0..self.iterations {
            self.roost_cycle(&client, &mut results.roost)
                .await
                .with_context(|| format!("roost, iteration {i}"))?;
            self.crun_cycle(&i.to_string(), &mut results.crun)
                .await
                .with_context(|| format!("crun, iteration {i}"))?;
            self.podman_cycle(&i.to_string(), &mut results.podman)
                .await
                .with_context(|| format!("podman, iteration {i}"))?;
            self.hook_cycle(&mut results.hook).await?;
        }
        Ok(results)
    }

    /// Starts `roost up` like the end-to-end tests do, imports the busybox
    /// image and creates the app.
    async fn start_daemon(&mut self) -> Result<()> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("no free loopback port")?;
        self.url = format!("http://{addr}");
        let log = File::create(&self.daemon_log)
            .with_context(|| format!("cannot create {}", self.daemon_log.display()))?;
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_roost"))
            .args(["up", "--no-install", "--api-listen", &addr.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--network-site")
            .arg(self.network.config().site.to_string())
            .arg("--netns-dir")
            .arg(&self.network.config().netns_dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot spawn roost up")?;
        self.daemon = Some(child);
        let deadline = Instant::now() + DAEMON_READY_TIMEOUT;
        loop {
            if let Ok(token) = std::fs::read_to_string(self.data_dir().join("admin-token")) {
                self.token = token.trim().to_string();
                if self.client().list_apps().await.is_ok() {
                    break;
                }
            }
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("roost up exited early ({status})");
            }
            ensure!(
                Instant::now() < deadline,
                "roost up not ready after {DAEMON_READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let layout = roost_testkit::busybox_layout(self.tmp.path());
        let client = self.client();
        client
            .import_image(&layout.to_string_lossy(), IMAGE)
            .await
            .context("importing the busybox image into roost")?;
        client.create_app(APP).await.context("creating the app")?;
        Ok(())
    }

    /// One roost machine from create to destroy, timing each API call.
    async fn roost_cycle(&self, client: &Client, samples: &mut RoostSamples) -> Result<()> {
        let request = CreateMachineRequest {
            config: MachineConfig {
                image: IMAGE.into(),
                init: Some(MachineInit {
                    cmd: vec!["sleep".into(), "1000".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let started = Instant::now();
        let machine = client
            .create_machine(APP, &request)
            .await
            .context("create")?;
        samples.create.push(started.elapsed());
        ensure!(
            machine.state == MachineState::Started,
            "create returned state {:?}",
            machine.state
        );
        let id = machine.id;
        self.check_roost_running(&id).await?;

        let started = Instant::now();
        client.get_machine(APP, &id).await.context("get")?;
        samples.get.push(started.elapsed());

        let exec = ExecRequest {
            command: vec!["true".into()],
            ..Default::default()
        };
        let started = Instant::now();
        let out = client.exec(APP, &id, &exec).await.context("exec")?;
        samples.exec.push(started.elapsed());
        ensure!(out.exit_code == 0, "exec true exited {}", out.exit_code);

        let started = Instant::now();
        client
            .stop_machine(APP, &id, &StopRequest::default())
            .await
            .context("stop")?;
        samples.stop.push(started.elapsed());

        let started = Instant::now();
        client.start_machine(APP, &id).await.context("start")?;
        samples.start.push(started.elapsed());
        self.check_roost_running(&id).await?;

        let started = Instant::now();
        client
            .destroy_machine(APP, &id, true)
            .await
            .context("destroy")?;
        samples.destroy.push(started.elapsed());
        Ok(())
    }

    /// Asks crun itself (not roost) for the machine's init and checks that
    /// `sleep` runs under it.
    async fn check_roost_running(&self, id: &str) -> Result<()> {
        let pid = self.crun_pid(&self.roost_crun_root(), id).await?;
        wait_for_sleep(pid).with_context(|| format!("roost machine {id}"))
    }

    /// `crun spec`, made by roost-runtime into a plain bundle of the
    /// benchmark's workload on the busybox tree with the namespaces roost
    /// gives every machine.
    async fn write_crun_bundle(&self) -> Result<()> {
        std::fs::create_dir_all(&self.bundle)?;
        let mut spec = std::process::Command::new("crun");
        spec.arg("spec").current_dir(&self.bundle);
        self.command(spec, "crun spec").await?;
        roost_runtime::write_plain_bundle(
            &self.bundle,
            &self.rootfs,
            &["sleep".into(), "1000".into()],
        )?;
        Ok(())
    }

    /// One raw crun container: create+start, exec, kill+delete.
    async fn crun_cycle(&self, tag: &str, samples: &mut CrunSamples) -> Result<()> {
        let id = format!("bench-crun-{tag}");
        let root = self.crun_root();
        let id_arg = OsStr::new(&id);
        let started = Instant::now();
        self.crun(
            &root,
            &[
                "create".as_ref(),
                "--bundle".as_ref(),
                self.bundle.as_os_str(),
                id_arg,
            ],
        )
        .await?;
        let created = Instant::now();
        self.crun(&root, &["start".as_ref(), id_arg]).await?;
        samples.create.push(created - started);
        samples.start.push(created.elapsed());
        samples.create_start.push(started.elapsed());
        let pid = self.crun_pid(&root, &id).await?;
        wait_for_sleep(pid).with_context(|| format!("crun container {id}"))?;

        let mut exec = self.runtime_command("crun");
        exec.arg("--root").arg(&root).args(["exec", &id, "true"]);
        let started = Instant::now();
        self.command(exec, "crun exec").await?;
        samples.exec.push(started.elapsed());

        let started = Instant::now();
        self.crun(&root, &["kill".as_ref(), id_arg, "KILL".as_ref()])
            .await?;
        self.crun(&root, &["delete".as_ref(), "-f".as_ref(), id_arg])
            .await?;
        samples.kill_delete.push(started.elapsed());
        Ok(())
    }

    /// Runs `crun --root ROOT ARGS...` in the runtime's mount namespace.
    async fn crun(&self, root: &Path, args: &[&OsStr]) -> Result<()> {
        let mut cmd = self.runtime_command("crun");
        cmd.arg("--root").arg(root).args(args);
        let line = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        self.command(cmd, &format!("crun {line}")).await.map(drop)
    }

    /// The host pid of a running container's init, from `crun state`.
    async fn crun_pid(&self, root: &Path, id: &str) -> Result<u32> {
        let mut cmd = self.runtime_command("crun");
        cmd.arg("--root").arg(root).args(["state", id]);
        let out = self.command(cmd, "crun state").await?;
        let state: Value = serde_json::from_slice(&out).context("crun state output")?;
        ensure!(
            state["status"] == "running",
            "container {id} is {} instead of running",
            state["status"]
        );
        state["pid"]
            .as_u64()
            .and_then(|pid| u32::try_from(pid).ok())
            .with_context(|| format!("crun state of {id} has no pid: {state}"))
    }

    /// One podman container: create, start, exec, stop, start again, rm.
    async fn podman_cycle(&mut self, tag: &str, samples: &mut PodmanSamples) -> Result<()> {
        let name = format!("roost-bench-{tag}");
        self.podman_names.push(name.clone());
        // podman's default ulimits (1048576 files, unlimited processes) need
        // CAP_SYS_RESOURCE, which sandboxed hosts may not grant; use what
        // roost gives machines instead (the daemon's hard limit, 4096 tasks).
        let nofile = own_nofile_hard_limit();
        let nofile = format!("nofile={nofile}:{nofile}");
        let rootfs = self.rootfs.to_string_lossy().into_owned();
        let started = Instant::now();
        self.podman(&[
            "create",
            "--name",
            &name,
            "--network=none",
            "--ulimit",
            &nofile,
            "--ulimit",
            "nproc=4096:4096",
            "--rootfs",
            &rootfs,
            "sleep",
            "1000",
        ])
        .await?;
        self.podman(&["start", &name]).await?;
        samples.create_start.push(started.elapsed());
        self.check_podman_running(&name).await?;

        let started = Instant::now();
        self.podman(&["exec", &name, "true"]).await?;
        samples.exec.push(started.elapsed());

        let started = Instant::now();
        self.podman(&["stop", "--time=0", &name]).await?;
        samples.stop.push(started.elapsed());

        let started = Instant::now();
        self.podman(&["start", &name]).await?;
        samples.start.push(started.elapsed());
        self.check_podman_running(&name).await?;

        let started = Instant::now();
        self.podman(&["rm", "--force", "--time=0", &name]).await?;
        samples.destroy.push(started.elapsed());
        self.podman_names.pop();
        Ok(())
    }

    async fn check_podman_running(&self, name: &str) -> Result<()> {
        let out = self
            .podman(&["inspect", "--format", "{{.State.Pid}}", name])
            .await?;
        let pid: u32 = String::from_utf8_lossy(&out)
            .trim()
            .parse()
            .with_context(|| format!("podman inspect {name}: no pid"))?;
        wait_for_sleep(pid).with_context(|| format!("podman container {name}"))
    }

    async fn podman(&self, args: &[&str]) -> Result<Vec<u8>> {
        let mut cmd = self.podman_command();
        cmd.args(args);
        self.command(cmd, &format!("podman {}", args.join(" ")))
            .await
    }

    /// podman with storage, run state and events private to this benchmark
    /// (all three must match between calls, or podman refuses its own DB).
    fn podman_command(&self) -> std::process::Command {
        let podman = self.tmp.path().join("podman");
        let mut cmd = self.runtime_command("podman");
        cmd.arg("--root")
            .arg(podman.join("root"))
            .arg("--runroot")
            .arg(podman.join("run"))
            .arg("--tmpdir")
            .arg(podman.join("tmp"))
            .args([
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
                "--log-level=error",
            ]);
        cmd
    }

    /// What the private mount namespace costs per runtime call: spawning
    /// `true` with and without the hook.
    async fn hook_cycle(&self, samples: &mut HookSamples) -> Result<()> {
        let started = Instant::now();
        self.command(std::process::Command::new("true"), "true")
            .await?;
        samples.plain.push(started.elapsed());
        let started = Instant::now();
        self.command(
            self.runtime_command("true"),
            "true in a private mount namespace",
        )
        .await?;
        samples.private_ns.push(started.elapsed());
        Ok(())
    }

    /// A runtime invocation, in a private mount namespace without the v2
    /// hierarchy on hybrid hosts, as roost runs crun.
    fn runtime_command(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        if self.hybrid {
            // SAFETY: the hook only makes async-signal-safe system calls
            // with static arguments.
            unsafe {
                cmd.pre_exec(detach_unified_hierarchy);
            }
        }
        cmd
    }

    /// Runs `cmd` to completion and returns its stdout; fails on a non-zero
    /// exit or after [`COMMAND_TIMEOUT`].
    ///
    /// stdout and stderr go to files, not pipes: `crun create` and podman's
    /// conmon hand them on to processes that outlive the command, and a
    /// pipe would then never reach end of file.
    async fn command(&self, mut cmd: std::process::Command, what: &str) -> Result<Vec<u8>> {
        let out_path = self.tmp.path().join("cmd.out");
        let err_path = self.tmp.path().join("cmd.err");
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("cannot run {what}"))?;
        let status = tokio::time::timeout(COMMAND_TIMEOUT, child.wait())
            .await
            .with_context(|| format!("{what} still runs after {COMMAND_TIMEOUT:?}"))??;
        let stdout = std::fs::read(&out_path)?;
        if !status.success() {
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            bail!("{what} failed ({status}): {}", stderr.trim());
        }
        Ok(stdout)
    }

    /// The last lines of the daemon's log, for error reports.
    fn daemon_log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.daemon_log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        for root in [self.roost_crun_root(), self.crun_root()] {
            let ids = std::fs::read_dir(&root)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name());
            for id in ids {
                let _ = self
                    .runtime_command("crun")
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force"])
                    .arg(&id)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if !self.podman_names.is_empty() {
            let _ = self
                .podman_command()
                .args(["rm", "--force", "--ignore", "--time=0"])
                .args(&self.podman_names)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&Path> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(Path::new)
            .filter(|mount| mount.starts_with(self.tmp.path()))
            .collect();
        // Deepest first, so nested mounts do not keep their parents busy.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for mount in mounts {
            let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
        }
        if let Err(err) = self.network.teardown_blocking() {
            eprintln!("private network teardown failed: {err}");
        }
    }
}

/// A private-network site no bridge on this host uses, so the benchmark
/// never touches the network of a `roost up` running here (site 0).
fn bench_site() -> u16 {
    (0xbe00..=0xbeff)
        .find(|site| {
            !std::fs::read_dir("/sys/class/net")
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("rb-{site:04x}-"))
                })
        })
        .unwrap_or(0xbeff)
}

/// Whether cgroup v1 controllers are mounted next to a v2 hierarchy, the
/// layout Debian's crun refuses.
fn hybrid_cgroups() -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    let is_v2 = |path: &str| {
        statfs(path)
            .map(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
            .unwrap_or(false)
    };
    !is_v2("/sys/fs/cgroup") && is_v2("/sys/fs/cgroup/unified")
}

/// Runs between fork and exec: a private mount namespace (propagation off,
/// so the host never sees the change) with the v2 hierarchy detached, so
/// crun sees a plain v1 host. The same steps roost's runtime driver takes.
///
/// Only async-signal-safe system calls with static arguments: the caller is
/// a forked copy of a process that may have other threads.
fn detach_unified_hierarchy() -> io::Result<()> {
    // SAFETY: unshare, mount and umount2 are async-signal-safe; every
    // pointer is a static NUL-terminated string or null.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::umount2(HYBRID_UNIFIED.as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// This process's hard `RLIMIT_NOFILE`, the most a container may be given
/// without `CAP_SYS_RESOURCE`.
fn own_nofile_hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_max
}

/// Waits until `pid` is `sleep` or has a `sleep` child (roost's tini runs
/// the command as its child). A started container's init may still be
/// between the runtime's exec and the workload's, hence the bounded poll.
fn wait_for_sleep(pid: u32) -> Result<()> {
    ensure!(pid > 0, "no process (pid 0)");
    let deadline = Instant::now() + RUNNING_CHECK_TIMEOUT;
    loop {
        if comm(pid).as_deref() == Some("sleep")
            || children(pid).any(|c| comm(c).as_deref() == Some("sleep"))
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "pid {pid} ({:?}) runs no sleep after {RUNNING_CHECK_TIMEOUT:?}",
            comm(pid)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
}

fn children(pid: u32) -> impl Iterator<Item = u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect::<Vec<u32>>()
        .into_iter()
}

/// Formats a table cell: median / p99 in milliseconds.
fn cell(samples: Option<&Samples>) -> String {
    match samples {
        Some(s) => format!("{:>8.1} {:>8.1}", s.median_ms(), s.p99_ms()),
        None => format!("{:>8} {:>8}", "-", "-"),
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

fn print_report(results: &Results, iterations: usize, hybrid: bool) {
    let Results {
        roost,
        crun,
        podman,
        hook,
    } = results;
    println!();
    println!(
        "roost lifecycle benchmark: {iterations} iterations each, interleaved, busybox `sleep 1000`, times in ms"
    );
    println!();
    println!(
        "{:<34} {:>17} {:>17} {:>17}",
        "operation", "roost", "crun", "podman"
    );
    println!(
        "{:<34} {:>17} {:>17} {:>17}",
        "", "median      p99", "median      p99", "median      p99"
    );
    let rows = [
        (
            "create -> running",
            Some(&roost.create),
            None,
            Some(&podman.create_start),
        ),
        (
            "start stopped -> running",
            Some(&roost.start),
            Some(&crun.create_start),
            Some(&podman.start),
        ),
        (
            "stop",
            Some(&roost.stop),
            Some(&crun.kill_delete),
            Some(&podman.stop),
        ),
        (
            "exec true",
            Some(&roost.exec),
            Some(&crun.exec),
            Some(&podman.exec),
        ),
        (
            "destroy (force, running)",
            Some(&roost.destroy),
            None,
            Some(&podman.destroy),
        ),
        ("GET machine (API only)", Some(&roost.get), None, None),
    ];
    for (name, r, c, p) in rows {
        println!("{name:<34} {} {} {}", cell(r), cell(c), cell(p));
    }
    println!();
    println!("  crun column: start = create+start, stop = kill KILL + delete -f");
    println!(
        "    (crun create alone {:.1} ms, crun start alone {:.1} ms, medians)",
        crun.create.median_ms(),
        crun.start.median_ms()
    );
    println!(
        "  podman column: create = create + first start, stop = stop -t 0, destroy = rm -f -t 0"
    );
    println!();

    let start_vs_crun = roost.start.median_ms() / crun.create_start.median_ms();
    let podman_vs_start = podman.start.median_ms() / roost.start.median_ms();
    let api = roost.get.median_ms();
    println!("targets (medians)");
    println!(
        "  roost start / crun create+start  = {start_vs_crun:>6.2}   target <= {TARGET_START_VS_CRUN}   {}",
        verdict(start_vs_crun <= TARGET_START_VS_CRUN)
    );
    println!(
        "  podman start / roost start       = {podman_vs_start:>6.2}   target >= {TARGET_PODMAN_VS_START}     {}",
        verdict(podman_vs_start >= TARGET_PODMAN_VS_START)
    );
    println!(
        "  API overhead (GET machine)       = {api:>6.2} ms target < {TARGET_API_MS} ms  {}",
        verdict(api < TARGET_API_MS)
    );
    println!(
        "  roost's own start overhead       = {:>6.1} ms (roost start - crun create+start)",
        roost.start.median_ms() - crun.create_start.median_ms()
    );
    println!();
    if hybrid {
        println!(
            "hybrid cgroups: every crun/podman call above ran in a private mount namespace without /sys/fs/cgroup/unified, as roost runs crun;"
        );
        println!(
            "  its cost per call: spawn `true` {:.2} ms plain vs {:.2} ms with the hook (median)",
            hook.plain.median_ms(),
            hook.private_ns.median_ms()
        );
    } else {
        println!(
            "cgroups not hybrid: runtime calls ran without a private mount namespace; spawn `true` median {:.2} ms",
            hook.plain.median_ms()
        );
    }
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("lifecycle bench: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("lifecycle bench: cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut bench = match Bench::new(options) {
        Ok(bench) => bench,
        Err(err) => {
            eprintln!("lifecycle bench: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(bench.run());
    match outcome {
        Ok(results) => {
            print_report(&results, bench.iterations, bench.hybrid);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("lifecycle bench failed: {err:#}");
            eprintln!(
                "last lines of the roost daemon log:\n{}",
                bench.daemon_log_tail()
            );
            ExitCode::FAILURE
        }
    }
}
