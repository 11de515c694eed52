//! Security regression tests (issue 13): each test replays one way a
//! machine, an API caller or a local user got what it must not have, as
//! it was found by probing roost, and checks that the way is closed.
//! `cargo test -p roost --test security` runs the group.

mod common;

use common::{python, sh_config, Daemon, APP};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A secret value that no answer, log line, event or command line may show.
const SECRET: &str = "s3cr3t-value-7f1e9b";
/// A value of the machine's own `config.env`, just as private.
const CONFIG_SECRET: &str = "config-value-c0ffee42";

/// A started machine running `sleep` with [`SECRET`] as an app secret and
/// [`CONFIG_SECRET`] in its config's environment.
async fn machine_with_secrets(daemon: &Daemon) -> String {
    let (status, body) = daemon
        .call(
            Method::POST,
            &format!("/v1/apps/{APP}/secrets"),
            Some(json!({"values": {"MY_SECRET": SECRET}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut config = sh_config("sleep 3600");
    config
        .env
        .insert("CONFIG_SECRET".into(), CONFIG_SECRET.into());
    let (status, machine) = create_machine(daemon, &config).await;
    assert_eq!(status, 200, "{machine}");
    let id = machine["id"].as_str().expect("id").to_string();
    daemon.wait_state(&id, "started", 30).await;
    id
}

/// `POST /v1/apps/APP/machines` with `config`: the status and the answer.
async fn create_machine(daemon: &Daemon, config: &roost_types::MachineConfig) -> (u16, Value) {
    daemon
        .call(
            Method::POST,
            &format!("/v1/apps/{APP}/machines"),
            Some(json!({ "config": config })),
        )
        .await
}

/// `method` on machine `id` of [`APP`] (`suffix` after its path, such as
/// `/stop`), without a body: the status and the answer.
async fn on_machine(daemon: &Daemon, method: Method, id: &str, suffix: &str) -> (u16, Value) {
    daemon
        .call(
            method,
            &format!("/v1/apps/{APP}/machines/{id}{suffix}"),
            None,
        )
        .await
}

/// `GET path`: the status and the answer.
async fn get(daemon: &Daemon, path: &str) -> (u16, Value) {
    daemon.call(Method::GET, path, None).await
}

/// Panics unless the answer is a 400 whose message contains `needle`.
fn assert_refused(status: u16, body: &Value, needle: &str) {
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {body}");
}

/// Panics if `text` holds either secret value.
fn assert_no_secret(what: &str, text: &str) {
    for value in [SECRET, CONFIG_SECRET] {
        assert!(
            !text.contains(value),
            "{what} shows a secret value:\n{text}"
        );
    }
}

/// Calls MCP tool `tool` over Streamable HTTP (an initialize handshake,
/// then `tools/call`) and returns the JSON-RPC result.
async fn mcp_call(daemon: &Daemon, tool: &str, arguments: Value) -> Value {
    let post = |body: Value, session: Option<&str>| {
        let mut request = daemon
            .http(Method::POST, "/mcp")
            .header("Accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request
                .header("Mcp-Session-Id", session)
                .header("Mcp-Protocol-Version", "2025-03-26");
        }
        request.send()
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                          "clientInfo": {"name": "security-test", "version": "1"}}}),
        None,
    )
    .await
    .expect("initialize");
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .expect("session id")
        .to_string();
    post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    )
    .await
    .expect("initialized");
    let answer = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": tool, "arguments": arguments}}),
        Some(&session),
    )
    .await
    .expect("tools/call")
    .text()
    .await
    .expect("tools/call answer");
    let data = answer
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .find(|data| data.contains("\"id\":2"))
        .unwrap_or_else(|| panic!("no answer to tools/call in {answer}"));
    serde_json::from_str::<Value>(data.trim()).expect("JSON-RPC answer")["result"].clone()
}

/// Finding 1: a NUL byte in an exec argument was a 500 whose message held
/// the runtime's command line with every environment value. It must be a
/// 400 naming the field and index, before anything runs, with no value in
/// the answer, the MCP tool's answer, the daemon's log or the events.
#[tokio::test(flavor = "multi_thread")]
async fn security_exec_with_a_nul_byte_is_refused_without_showing_secrets() {
    let daemon = Daemon::start().await;
    let id = machine_with_secrets(&daemon).await;
    let exec = format!("/v1/apps/{APP}/machines/{id}/exec");

    let (status, body) = daemon
        .call(
            Method::POST,
            &exec,
            Some(json!({"command": ["echo", "a\u{0}b"]})),
        )
        .await;
    assert_refused(status, &body, "command[1]");
    assert_no_secret("the API's answer", &body.to_string());

    let (status, body) = daemon
        .call(Method::POST, &exec, Some(json!({"cmd": "echo a\u{0}b"})))
        .await;
    assert_refused(status, &body, "cmd contains a NUL");

    let tool = mcp_call(
        &daemon,
        "exec",
        json!({"app": APP, "machine_id": id, "command": ["echo", "a\u{0}b"]}),
    )
    .await;
    assert_eq!(tool["isError"], true, "{tool}");
    assert!(tool.to_string().contains("command[1]"), "{tool}");
    assert_no_secret("the MCP exec tool's answer", &tool.to_string());

    // The exec that works still sees the secrets: they are only hidden.
    let (status, body) = daemon
        .call(
            Method::POST,
            &exec,
            Some(json!({"command": ["sh", "-c", "echo $MY_SECRET"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], format!("{SECRET}\n"));

    let (_, events) = get(&daemon, &format!("/v1/apps/{APP}/machines/{id}/events")).await;
    assert_no_secret("the machine's events", &events.to_string());
    assert_no_secret("the daemon's log", &daemon.log());
}

/// Finding 2: exec passed the environment as `--env K=V` arguments of the
/// runtime, so every local user saw app secrets in `ps`. While an exec
/// runs, no process on the host may carry a secret value in its argv.
#[tokio::test(flavor = "multi_thread")]
async fn security_exec_keeps_the_environment_out_of_the_process_list() {
    let daemon = Daemon::start().await;
    let id = machine_with_secrets(&daemon).await;
    let client = daemon.client();
    let running = tokio::spawn(async move {
        client
            .exec(
                APP,
                &id,
                &roost_types::ExecRequest {
                    command: vec!["sleep".into(), "3".into()],
                    ..Default::default()
                },
            )
            .await
    });
    let mut seen_exec = false;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !running.is_finished() {
        seen_exec |= !common::processes_mentioning("sleep\u{0}3").is_empty();
        for value in [SECRET, CONFIG_SECRET] {
            let holders = common::processes_mentioning(value);
            assert!(
                holders.is_empty(),
                "processes {holders:?} show a secret in their command line"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = running.await.expect("exec task").expect("exec");
    assert_eq!(output.exit_code, 0, "{output:?}");
    assert!(seen_exec, "the exec'd command was never seen running");
}

/// Finding 10: a create whose `config.env` holds a NUL byte was refused
/// only when the machine was started, leaving a `failed` machine behind.
/// It must be refused first (400 naming the variable, not its value) and
/// change nothing.
#[tokio::test(flavor = "multi_thread")]
async fn security_create_with_a_nul_in_env_changes_nothing() {
    let daemon = Daemon::start().await;
    let mut config = sh_config("sleep 3600");
    config
        .env
        .insert("BROKEN".into(), format!("{CONFIG_SECRET}\u{0}tail"));
    let (status, body) = create_machine(&daemon, &config).await;
    assert_refused(status, &body, "config.env.BROKEN");
    assert_no_secret("the refusal", &body.to_string());
    let (status, listed) = get(
        &daemon,
        &format!("/v1/apps/{APP}/machines?include_deleted=true"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed, json!([]), "a refused create left a machine behind");

    let mut config = sh_config("sleep 3600");
    config.init.as_mut().unwrap().cmd.push("a\u{0}b".into());
    let (status, body) = create_machine(&daemon, &config).await;
    assert_refused(status, &body, "config.init.cmd[3]");
}

/// Finding 7: absurd durations (`1e300`) panicked the request's task in
/// `Duration::from_secs_f64`; the connection dropped and an MCP call never
/// answered. Every duration field answers 400 naming the allowed range.
#[tokio::test(flavor = "multi_thread")]
async fn security_absurd_durations_and_numbers_get_a_400_naming_the_range() {
    let daemon = Daemon::start().await;
    let id = machine_with_secrets(&daemon).await;
    let on = |path: &str| format!("/v1/apps/{APP}/machines/{id}{path}");
    let huge = "1e300";
    let cases: Vec<(Method, String, Option<Value>, &str)> = vec![
        (
            Method::GET,
            on(&format!("/wait?state=stopped&timeout={huge}")),
            None,
            "1 to 300 seconds",
        ),
        (
            Method::GET,
            on("/wait?state=stopped&timeout=99999999999999999999h"),
            None,
            "1 to 300 seconds",
        ),
        (
            Method::POST,
            on("/stop"),
            Some(json!({"timeout": huge})),
            "0s to 5m",
        ),
        (
            Method::POST,
            on("/stop"),
            Some(json!({"timeout": 1e300})),
            "0s to 5m",
        ),
        (
            Method::POST,
            on(&format!("/restart?timeout={huge}")),
            None,
            "0s to 5m",
        ),
        (
            Method::POST,
            on("/exec"),
            Some(json!({"cmd": "true", "timeout": u64::MAX})),
            "1 to 300 seconds",
        ),
        (
            Method::POST,
            on("/lease"),
            Some(json!({"ttl": u64::MAX})),
            "1 to 3600 seconds",
        ),
    ];
    for (method, path, body, range) in cases {
        let (status, answer) = daemon.call(method.clone(), &path, body.clone()).await;
        assert_refused(status, &answer, range);
        assert!(
            answer["error"].as_str().unwrap().contains("timeout")
                || answer["error"].as_str().unwrap().contains("ttl"),
            "{method} {path} {body:?}: {answer}"
        );
    }
    for (config, field, range) in [
        (
            json!({"stop_config": {"timeout": huge}}),
            "config.stop_config.timeout",
            "0s to 5m",
        ),
        (
            json!({"checks": {"alive": {"type": "tcp", "port": 80, "interval": huge}}}),
            "config.checks.alive.interval",
            "1s to 24h",
        ),
        (
            json!({"services": [{"internal_port": 80, "checks": [{"grace_period": "99999999999999999999h"}]}]}),
            "config.services[0].checks[0].grace_period",
            "0s to 24h",
        ),
        (
            json!({"services": [{"internal_port": 80, "ports": [{"port": 80, "http_options": {"idle_timeout": u64::MAX}}]}]}),
            "config.services[0].ports[0].http_options.idle_timeout",
            "1 to 86400 seconds",
        ),
        (
            json!({"files": [{"guest_path": "/x", "raw_value": "aGk=", "mode": u32::MAX}]}),
            "config.files[0].mode",
            "0 to 4095",
        ),
    ] {
        let mut full = serde_json::to_value(sh_config("sleep 3600")).unwrap();
        full.as_object_mut()
            .unwrap()
            .extend(config.as_object().unwrap().clone());
        let (status, answer) = daemon
            .call(
                Method::POST,
                &format!("/v1/apps/{APP}/machines"),
                Some(json!({ "config": full })),
            )
            .await;
        assert_refused(status, &answer, field);
        assert_refused(status, &answer, range);
    }
    let (status, answer) = daemon
        .call(
            Method::POST,
            &format!("/v1/apps/{APP}/machines"),
            Some(json!({"config": sh_config("sleep 3600"), "lease_ttl": u64::MAX})),
        )
        .await;
    assert_refused(status, &answer, "lease_ttl");

    let tool = mcp_call(
        &daemon,
        "stop_machine",
        json!({"app": APP, "machine_id": id, "timeout_seconds": u64::MAX}),
    )
    .await;
    assert_eq!(tool["isError"], true, "{tool}");
    assert!(tool.to_string().contains("0s to 5m"), "{tool}");
    let (_, listed) = get(
        &daemon,
        &format!("/v1/apps/{APP}/machines?include_deleted=true"),
    )
    .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(daemon.state(&id).await, roost_types::MachineState::Started);
}

/// Runs `program` as user `nobody` (uid and gid 65534, no groups): the
/// local user without root of the threat model. Returns whether it ran,
/// and what it printed.
fn run_as_nobody(program: &std::path::Path) -> (bool, String) {
    // setpriv finds its program before it drops root, so a shell running
    // as nobody looks the path up, as a local user's would.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/bin/sh", "-c", "exec \"$0\""])
        .arg(program)
        .output()
        .expect("setpriv (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Finding 3: a machine wrote a setuid-root program into its rootfs, and
/// any local user ran it from the host (`DATA/machines/<id>/upper/...`)
/// with euid 0; image layers kept theirs (`su`) under 0755 directories.
/// As `nobody`, neither runs; the file tools' mount of a stopped machine
/// is `nosuid,nodev`.
#[tokio::test(flavor = "multi_thread")]
async fn security_setuid_files_of_machines_and_images_are_out_of_local_users_reach() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = Daemon::start().await;
    // The data dir of `roost up` sits in a world-traversable /var/lib;
    // the test's temporary directory is made to look the same.
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod test dir");
    // The probe: the host's own `id`, which prints the effective uid.
    let probe = std::fs::read("/usr/bin/id").expect("/usr/bin/id");

    let layout = daemon.dir.path().join("suid-oci");
    let mut layer = roost_testkit::layer::LayerBuilder::new();
    layer.file("probe", 0o4755, &probe);
    let spec = roost_testkit::oci::ImageSpec {
        config: json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]}),
        layers: vec![roost_testkit::busybox_layer(), layer.into_tar()],
        gzip: false,
        docker: false,
    };
    let manifest = roost_testkit::oci::write_image(&layout, &spec);
    roost_testkit::oci::write_index(&layout, vec![manifest.tagged("latest")]);
    daemon
        .client()
        .import_image(&layout.to_string_lossy(), "suid:latest")
        .await
        .expect("import the image with a setuid file");

    let mut config = sh_config("sleep 3600");
    config.files = vec![roost_types::MachineFile {
        guest_path: "/planted".into(),
        raw_value: Some(common::base64(&probe)),
        mode: Some(0o755),
        ..Default::default()
    }];
    let (status, machine) = create_machine(&daemon, &config).await;
    assert_eq!(status, 200, "{machine}");
    let id = machine["id"].as_str().unwrap().to_string();
    daemon.wait_state(&id, "started", 30).await;
    let chmod = daemon
        .sh(&id, "chmod 4755 /planted && ls -l /planted")
        .await;
    assert!(chmod.stdout.starts_with("-rwsr-xr-x"), "{chmod:?}");

    let data = daemon.data_dir();
    let machine_dir = data.join("machines").join(&id);
    let layers = data.join("images/layers/sha256");
    let mut planted = vec![
        machine_dir.join("mnt/upper/planted"),
        machine_dir.join("bundle/rootfs/planted"),
    ];
    planted.extend(
        std::fs::read_dir(&layers)
            .expect("layers")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("probe"))
            .filter(|p| p.exists()),
    );
    assert_eq!(planted.len(), 3, "the image's layer holds the probe");
    for path in &planted {
        let mode = std::fs::metadata(path).expect("probe").permissions().mode();
        assert_eq!(mode & 0o4000, 0o4000, "{} is setuid", path.display());
        let (ran, output) = run_as_nobody(path);
        assert!(
            !ran && !output.contains("euid=0"),
            "nobody ran {} (as root?): {output}",
            path.display()
        );
    }
    for dir in [
        data.clone(),
        data.join("machines"),
        data.join("images"),
        data.join("volumes"),
    ] {
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", dir.display());
    }

    // A stopped machine's rootfs, mounted for the file tools, is nosuid.
    let (status, body) = on_machine(&daemon, Method::POST, &id, "/stop").await;
    assert_eq!(status, 200, "{body}");
    daemon.wait_state(&id, "stopped", 30).await;
    let listing = mcp_call(
        &daemon,
        "list_dir",
        json!({"app": APP, "machine_id": id, "path": "/"}),
    )
    .await;
    assert_eq!(listing["isError"], false, "{listing}");
    let rootfs = machine_dir.join("bundle/rootfs");
    assert!(
        !roost_runtime::rootfs::is_mounted(&rootfs),
        "the file tools unmount what they mounted"
    );
}

/// Resident memory of process `pid`, in bytes (`VmRSS`).
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Which file is at `path` (its inode) and how big it is; zeros if none.
fn file_at(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| (m.ino(), m.len()))
        .unwrap_or((0, 0))
}

/// Finding 4: a machine running `yes` grew its log to 9.7 GB in 20 s;
/// rotation read the whole file into memory (the daemon reached 9.5 GB)
/// and a GET of the machine took 11.8 s. Flooded for 20 s, the log and
/// its rotated copy stay within their bound all along, the daemon within
/// 100 MB of its idle memory, the API answers quickly, and the log goes
/// on being written while roost is down.
#[tokio::test(flavor = "multi_thread")]
async fn security_a_flooding_machine_bounds_its_log_not_the_daemon() {
    const FLOOD: Duration = Duration::from_secs(20);
    // The relay rotates before a write would pass the bound: each file
    // stays within it (plus one read, 64 KiB, for a bound below a read).
    let bound = roost_machines::DEFAULT_LOG_MAX_BYTES + 64 * 1024;
    let mut daemon = Daemon::start().await;
    let idle = resident_bytes(daemon.pid());
    let (status, machine) = create_machine(&daemon, &sh_config("exec yes flood-line")).await;
    assert_eq!(status, 200, "{machine}");
    let id = machine["id"].as_str().unwrap().to_string();
    daemon.wait_state(&id, "started", 30).await;
    let log = daemon.data_dir().join("machines").join(&id).join("log");
    let rotated = roost_runtime::logs::rotated_path(&log);

    let flood_started = Instant::now();
    let (mut slowest, mut peak, mut rotations) = (Duration::ZERO, idle, 0);
    let mut last_rotated = file_at(&rotated).0;
    while flood_started.elapsed() < FLOOD {
        let asked = Instant::now();
        let (status, body) = get(&daemon, &format!("/v1/apps/{APP}/machines/{id}")).await;
        slowest = slowest.max(asked.elapsed());
        assert_eq!(status, 200, "{body}");
        for file in [&log, &rotated] {
            let size = file_at(file).1;
            assert!(
                size <= bound,
                "{} is {size} bytes after {:?} (bound {bound})",
                file.display(),
                flood_started.elapsed()
            );
        }
        let now_rotated = file_at(&rotated).0;
        rotations += usize::from(now_rotated != last_rotated);
        last_rotated = now_rotated;
        peak = peak.max(resident_bytes(daemon.pid()));
        assert!(
            peak < idle + 100 * 1024 * 1024,
            "the daemon grew from {idle} to {peak} bytes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "flood: slowest GET {slowest:?}, daemon {idle} -> {peak} bytes, {rotations} rotations seen"
    );
    assert!(rotations > 1, "the flood never passed the bound");
    assert!(
        slowest < Duration::from_secs(2),
        "a GET of the machine took {slowest:?}"
    );
    let tail = std::fs::read_to_string(&log).expect("log");
    assert!(tail.contains("flood-line\n"), "{:.100}", tail);

    // The relay is not the daemon's: with roost killed, the log moves on.
    daemon.kill();
    let before = file_at(&log);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_ne!(
        file_at(&log),
        before,
        "nothing was logged while roost was down"
    );
    daemon.spawn(None).await;
    let (status, body) = on_machine(&daemon, Method::DELETE, &id, "?force=true").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        common::processes_mentioning(&id).is_empty(),
        "the relay outlived its destroyed machine"
    );
}

/// Kills whatever is left in a machine's cgroup and removes its cgroup
/// directories when dropped, so a failing fork-bomb test leaves nothing
/// running on the host.
struct CgroupSweep(String);

impl Drop for CgroupSweep {
    fn drop(&mut self) {
        let name = format!("roost/{}", self.0);
        // Drop runs inside the test's runtime: sweep from a thread of our own.
        let swept = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime")
                .block_on(roost_runtime::cgroup::kill_all(
                    &name,
                    Duration::from_secs(30),
                ))
        })
        .join();
        if !matches!(swept, Ok(Ok(()))) {
            eprintln!("cannot sweep the cgroup of {}: {swept:?}", self.0);
        }
        for dir in common::cgroups_of(&self.0) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// How many processes cgroup `roost/<id>` holds (its pids controller).
fn pids_in(id: &str) -> usize {
    std::fs::read_to_string(format!("/sys/fs/cgroup/pids/roost/{id}/pids.current"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/roost/{id}/pids.current")))
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Finding 8: a machine limited to 128 MB ran a fork bomb; `DELETE
/// ?force=true` answered 500 ("did not exit 10s after SIGKILL") and left
/// it `failed`, and a second DELETE said `destroyed` while 1,620
/// processes ran on in cgroups left in nine controllers. Destroy kills
/// through the cgroup: it succeeds within 10 s and leaves no process and
/// no cgroup. The bomb is bounded by the machine's pids limit (4096) and
/// memory (128 MB).
#[tokio::test(flavor = "multi_thread")]
async fn security_a_fork_bomb_dies_with_its_destroyed_machine() {
    let daemon = Daemon::start().await;
    let mut config = sh_config("sleep 1; bomb() { bomb | bomb & }; bomb; exec sleep 3600");
    config.guest = Some(roost_types::MachineGuest {
        memory_mb: Some(128),
        ..Default::default()
    });
    let (status, machine) = create_machine(&daemon, &config).await;
    assert_eq!(status, 200, "{machine}");
    let id = machine["id"].as_str().unwrap().to_string();
    let _sweep = CgroupSweep(id.clone());
    daemon.wait_state(&id, "started", 30).await;
    let bombing = Instant::now();
    while pids_in(&id) < 1000 && bombing.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bombers = pids_in(&id);
    assert!(bombers >= 500, "the bomb reached only {bombers} processes");

    let destroying = Instant::now();
    let (status, body) = on_machine(&daemon, Method::DELETE, &id, "?force=true").await;
    let took = destroying.elapsed();
    eprintln!("destroyed a machine of {bombers} processes in {took:?}");
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(10), "destroy took {took:?}");
    assert_eq!(
        daemon.state(&id).await,
        roost_types::MachineState::Destroyed
    );
    assert_eq!(pids_in(&id), 0, "processes outlived their machine");
    let left = common::cgroups_of(&id);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

/// The network interfaces machine `id` sees.
async fn interfaces(daemon: &Daemon, id: &str) -> String {
    let listed = daemon.sh(id, "ls /sys/class/net").await;
    assert_eq!(listed.exit_code, 0, "{listed:?}");
    listed.stdout
}

/// Finding 6: two `roost up` with different `--network-site` shared the
/// default `--netns-dir`; at start the second removed the first's
/// namespaces as orphaned, and the first's machines dropped to loopback
/// only while the API still said `started`. Each site now has its own
/// default dir, and a dir carries its owner's mark: a daemon given
/// another's dir refuses to start, before it touches anything.
#[tokio::test(flavor = "multi_thread")]
async fn security_a_second_daemon_leaves_the_first_ones_network_alone() {
    let first = Daemon::start_with_default_netns_dir().await;
    let (status, machine) = create_machine(&first, &sh_config("sleep 3600")).await;
    assert_eq!(status, 200, "{machine}");
    let id = machine["id"].as_str().unwrap().to_string();
    first.wait_state(&id, "started", 30).await;
    assert!(interfaces(&first, &id).await.contains("eth0"));

    let second = Daemon::start_with_default_netns_dir().await;
    assert_ne!(first.netns_dir(), second.netns_dir());
    assert!(
        first.netns_dir().join(&id).exists(),
        "the second daemon removed the first one's namespace"
    );
    assert!(
        interfaces(&first, &id).await.contains("eth0"),
        "the first daemon's machine lost its network"
    );

    // A third one told to use the first one's dir must refuse to start.
    let third = tempfile::tempdir().expect("tempdir");
    let third_site = common::free_site();
    let mut refused = std::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["up", "--no-install", "--api-listen"])
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--data-dir")
        .arg(third.path().join("data"))
        .arg("--network-site")
        .arg(third_site.to_string())
        .arg("--netns-dir")
        .arg(first.netns_dir())
        .env("ROOST_S3_LISTEN", "127.0.0.1:0")
        .env("ROOST_TOKENIZER_LISTEN", "127.0.0.1:0")
        .env("ROOST_PROXY_LISTEN", "127.0.0.1:0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run roost up");
    let deadline = Instant::now() + Duration::from_secs(60);
    while refused.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = refused.kill();
    let refused = refused.wait_with_output().expect("roost up's output");
    // Had it started, its site's host state must go (its netns dir is
    // not the first one's, which the teardown would empty).
    let _ = roost_net::Network::new(roost_net::NetConfig {
        site: third_site,
        netns_dir: third.path().join("netns"),
        ..Default::default()
    })
    .and_then(|net| net.teardown_blocking());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("belongs to another roost"), "{said}");
    assert!(interfaces(&first, &id).await.contains("eth0"));
}

/// Finding 10, the smaller leaks: `Authorization: bearer` (the scheme is
/// case-insensitive) was refused; an oversized body got a 400 or a
/// text/plain 413; names, `org_slug` and metadata had no length limits;
/// equal secret values had equal digests; and rmcp logged `set_secrets`'
/// values at debug level.
#[tokio::test(flavor = "multi_thread")]
async fn security_smaller_leaks_are_closed() {
    let daemon = Daemon::start_with_log_level("debug").await;

    for scheme in ["bearer", "BEARER", "Bearer"] {
        let answer = reqwest::Client::new()
            .get(format!("{}/v1/apps", daemon.url))
            .header("Authorization", format!("{scheme} {}", daemon.token))
            .send()
            .await
            .expect("roost reachable");
        assert_eq!(answer.status(), 200, "scheme {scheme}");
    }

    let huge = json!({"config": {"image": "x".repeat(3 * 1024 * 1024)}});
    let answer = daemon
        .http(Method::POST, &format!("/v1/apps/{APP}/machines"))
        .json(&huge)
        .send()
        .await
        .expect("roost reachable");
    assert_eq!(answer.status(), 413);
    let kind = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("application/json"), "{kind}");
    let body: Value = answer.json().await.expect("a JSON 413");
    assert!(
        body["error"].as_str().unwrap().contains("2097152 bytes"),
        "{body}"
    );

    let long = "x".repeat(64);
    let (status, body) = daemon
        .call(
            Method::POST,
            "/v1/apps",
            Some(json!({"app_name": "limits", "org_slug": long})),
        )
        .await;
    assert_refused(
        status,
        &body,
        "org_slug is 64 bytes long: allowed are 1 to 63 bytes",
    );
    let mut named = serde_json::to_value(sh_config("sleep 3600")).unwrap();
    let too_many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (request, needle) in [
        (json!({"name": long}), "name is 64 bytes long"),
        (json!({"region": long}), "region is 64 bytes long"),
        (
            json!({"config": {"metadata": {"k": "v".repeat(4097)}}}),
            "config.metadata.k is 4097 bytes long: allowed are 0 to 4096 bytes",
        ),
        (
            json!({"config": {"metadata": {"k".repeat(257): "v"}}}),
            "a config.metadata key is 257 bytes long",
        ),
        (
            json!({"config": {"metadata": too_many}}),
            "config.metadata = 65 is invalid: allowed values are 0 to 64 keys",
        ),
    ] {
        let mut full = json!({"config": named.clone()});
        for (field, value) in request.as_object().unwrap() {
            match field.as_str() {
                "config" => {
                    for (key, inner) in value.as_object().unwrap() {
                        full["config"][key] = inner.clone();
                    }
                }
                _ => full[field] = value.clone(),
            }
        }
        let (status, body) = daemon
            .call(
                Method::POST,
                &format!("/v1/apps/{APP}/machines"),
                Some(full),
            )
            .await;
        assert_refused(status, &body, needle);
    }
    named["metadata"] = json!({"role": "worker"});
    let (status, machine) = daemon
        .call(
            Method::POST,
            &format!("/v1/apps/{APP}/machines"),
            Some(json!({"config": named, "skip_launch": true})),
        )
        .await;
    assert_eq!(status, 200, "{machine}");
    let id = machine["id"].as_str().unwrap().to_string();
    let (status, body) = daemon
        .call(
            Method::POST,
            &format!("/v1/apps/{APP}/machines/{id}/metadata/k"),
            Some(json!({"value": "v".repeat(4097)})),
        )
        .await;
    assert_refused(status, &body, "config.metadata.k is 4097 bytes long");

    let tool = mcp_call(
        &daemon,
        "set_secrets",
        json!({"app": APP, "values": {"FIRST": SECRET, "SECOND": SECRET}}),
    )
    .await;
    assert_eq!(tool["isError"], false, "{tool}");
    let (status, listed) = get(&daemon, &format!("/v1/apps/{APP}/secrets")).await;
    assert_eq!(status, 200, "{listed}");
    let digests: Vec<&str> = listed["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| s["digest"].as_str().expect("digest"))
        .collect();
    assert_eq!(digests.len(), 2, "{listed}");
    assert_ne!(digests[0], digests[1], "equal values, equal digests");
    let log = daemon.log();
    assert!(log.contains("DEBUG"), "the daemon does log at debug");
    assert_no_secret("the daemon's debug log", &log);
}

/// Panics if a file of roost's database holds `secret`.
fn assert_not_in_database(daemon: &Daemon, secret: &str) {
    for file in ["roost.db", "roost.db-wal"] {
        let bytes = std::fs::read(daemon.data_dir().join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{file} holds an S3 secret key in plaintext"
        );
    }
}

/// Finding 10: apps' S3 secret keys were stored in plaintext in
/// `roost.db`. They must be sealed like app secrets, and a database of
/// an older roost, with plaintext keys, must be sealed at start with no
/// key lost: the old key still signs S3 requests, and the plaintext is
/// gone from the database files.
#[tokio::test(flavor = "multi_thread")]
async fn security_s3_secret_keys_are_sealed_at_rest() {
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut daemon = Daemon::start_with_args(&["--s3-listen", &listen]).await;
    let (status, storage) = daemon
        .call(
            Method::POST,
            &format!("/v1/apps/{APP}/storage"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{storage}");
    let access_key = storage["access_key_id"]
        .as_str()
        .expect("key id")
        .to_string();
    let secret = storage["secret_access_key"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_not_in_database(&daemon, &secret);

    // What an older roost left: the same key pair, as plaintext, in the
    // table it kept them in.
    daemon.kill();
    let db = daemon.data_dir().join("roost.db");
    python(
        "import sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1])\n\
         app, key, secret = sys.argv[2:5]\n\
         db.execute('CREATE TABLE storage_keys (app TEXT PRIMARY KEY, access_key_id TEXT NOT NULL UNIQUE, '\n\
                    'secret_access_key TEXT NOT NULL, created_at TEXT NOT NULL)')\n\
         db.execute('INSERT INTO storage_keys VALUES (?, ?, ?, ?)', (app, key, secret, '2026-01-01T00:00:00Z'))\n\
         db.execute('DELETE FROM app_storage_keys')\n\
         db.commit()\n",
        &[db.to_str().unwrap(), APP, &access_key, &secret],
    )
    .await;
    daemon.spawn(None).await;
    assert_not_in_database(&daemon, &secret);
    let bucket = storage["name"].as_str().expect("bucket");
    let read = python(
        "import sys, boto3\n\
         from botocore.config import Config\n\
         endpoint, key, secret, bucket = sys.argv[1:5]\n\
         s3 = boto3.client('s3', endpoint_url=endpoint, aws_access_key_id=key,\n\
                           aws_secret_access_key=secret, region_name='auto',\n\
                           config=Config(retries={'max_attempts': 1}))\n\
         s3.put_object(Bucket=bucket, Key='k', Body=b'kept')\n\
         print(s3.get_object(Bucket=bucket, Key='k')['Body'].read().decode())\n",
        &[&format!("http://{listen}"), &access_key, &secret, bucket],
    )
    .await;
    assert_eq!(read.trim(), "kept");
}

/// A host program's UDP socket bound to the service address, port `port`:
/// python3 (not roost) printing whatever datagrams reach it within
/// `secs` seconds, then `done`. Killed on drop.
struct HostUdpListener(std::process::Child);

impl HostUdpListener {
    fn start(address: std::net::Ipv6Addr, port: u16, secs: u32) -> HostUdpListener {
        let script = format!(
            "import socket, time\n\
             s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
             s.bind(('{address}', {port}))\n\
             print('ready', flush=True)\n\
             end = time.monotonic() + {secs}\n\
             while time.monotonic() < end:\n\
             \x20   s.settimeout(max(end - time.monotonic(), 0.01))\n\
             \x20   try:\n\
             \x20       data, peer = s.recvfrom(65535)\n\
             \x20       print('got', data.decode(), 'from', peer[0], flush=True)\n\
             \x20   except socket.timeout:\n\
             \x20       pass\n\
             print('done', flush=True)\n"
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let stdout = child.stdout.as_mut().expect("piped stdout");
        let mut reader = std::io::BufReader::new(stdout);
        std::io::BufRead::read_line(&mut reader, &mut line).expect("listener output");
        assert_eq!(
            line.trim(),
            "ready",
            "the host's UDP listener did not start"
        );
        HostUdpListener(child)
    }

    /// What it printed after `ready`, once it ended.
    fn heard(mut self) -> String {
        let mut out = String::new();
        let stdout = self.0.stdout.as_mut().expect("piped stdout");
        std::io::Read::read_to_string(stdout, &mut out).expect("listener output");
        out
    }
}

impl Drop for HostUdpListener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finding 10, the UDP input filter: it accepted datagrams from machines
/// to any host socket bound to a specific address (`-m socket`), so a host
/// program with a UDP socket on the service address (or a gateway)
/// answered every machine. Now only sockets carrying roost's mark match
/// (the edge proxy's UDP flows; `udp_round_trip_to_a_machine` in the proxy
/// tests shows they still work), and roost's DNS answers as before.
#[tokio::test(flavor = "multi_thread")]
async fn security_host_udp_sockets_are_out_of_machines_reach() {
    let daemon = Daemon::start().await;
    let (status, machine) = create_machine(&daemon, &sh_config("sleep 3600")).await;
    assert_eq!(status, 200, "{machine}");
    let id = machine["id"].as_str().unwrap().to_string();
    daemon.wait_state(&id, "started", 30).await;

    let service = roost_net::AddressPlan::new(daemon.site).service_address();
    let port = common::free_port();
    let listener = HostUdpListener::start(service, port, 3);
    // The datagrams leave from the machine's own network namespace, the
    // way its programs' would (busybox has no UDP client).
    let sent = std::process::Command::new("nsenter")
        .arg(format!("--net={}", daemon.netns_dir().join(&id).display()))
        .args(["python3", "-c"])
        .arg(format!(
            "import socket, time\n\
             s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
             for i in range(5):\n\
             \x20   try:\n\
             \x20       s.sendto(b'probe', ('{service}', {port}))\n\
             \x20   except OSError:\n\
             \x20       pass\n\
             \x20   time.sleep(0.2)\n"
        ))
        .status()
        .expect("nsenter python3");
    assert!(sent.success());
    let heard = listener.heard();
    assert!(heard.contains("done"), "{heard}");
    assert!(
        !heard.contains("got"),
        "a machine reached a host program's UDP socket: {heard}"
    );

    let name = format!("{id}.vm.{APP}.internal");
    let asked = daemon.sh(&id, &format!("nslookup -type=AAAA {name}")).await;
    assert_eq!(asked.exit_code, 0, "{asked:?}");
    assert!(asked.stdout.contains(&name), "{asked:?}");
}

/// Runs `script` under `sh -c` in machine `id`, for at most `secs` seconds.
async fn sh_for(daemon: &Daemon, id: &str, script: &str, secs: u64) -> roost_types::ExecResponse {
    daemon
        .client()
        .exec(
            APP,
            id,
            &roost_types::ExecRequest {
                command: vec!["sh".into(), "-c".into(), script.into()],
                timeout: Some(secs),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("exec {script:?} in {id}: {e}"))
}

/// The size of the filesystem at `/` inside machine `id`, in KiB, from
/// its own `df`.
async fn root_size_kib(daemon: &Daemon, id: &str) -> u64 {
    let df = daemon.sh(id, "df -k / | tail -n 1").await;
    assert_eq!(df.exit_code, 0, "{df:?}");
    df.stdout
        .split_whitespace()
        .nth(1)
        .and_then(|size| size.parse().ok())
        .unwrap_or_else(|| panic!("no size in {df:?}"))
}

/// Bytes free on the filesystem holding `path`.
fn free_bytes(path: &std::path::Path) -> u64 {
    let stat = nix::sys::statvfs::statvfs(path).expect("statvfs");
    stat.blocks_available() * stat.fragment_size()
}

/// Whether a root filesystem of `kib` KiB is one of `gb` GB: ext4 keeps a
/// few percent for its journal and tables.
fn is_gb(kib: u64, gb: u64) -> bool {
    let full = gb << 20;
    kib <= full && kib >= full * 9 / 10
}

/// Finding 9: `dd` inside a machine wrote 2 GiB into the host's root
/// filesystem, and `df` inside showed the host's 252 GB. A machine's root
/// filesystem now has a size (`rootfs.size_gb`, 8 GB by default): `df /`
/// inside shows it, writing past it is `ENOSPC` inside while the host and
/// another machine go on writing, the data survives stop and start, the
/// size grows with an update and never shrinks, and destroy releases the
/// disk's loop device, mount and files.
#[tokio::test(flavor = "multi_thread")]
async fn security_a_machine_fills_its_own_rootfs_not_the_hosts_disk() {
    let daemon = Daemon::start().await;
    for bad in [0, 501] {
        let mut config = sh_config("sleep 3600");
        config.rootfs = Some(roost_types::RootfsConfig {
            size_gb: Some(bad),
            ..Default::default()
        });
        let (status, body) = create_machine(&daemon, &config).await;
        assert_refused(status, &body, "config.rootfs.size_gb");
    }

    let mut small = sh_config("sleep 3600");
    small.rootfs = Some(roost_types::RootfsConfig {
        size_gb: Some(1),
        ..Default::default()
    });
    let (status, machine) = create_machine(&daemon, &small).await;
    assert_eq!(status, 200, "{machine}");
    let id = machine["id"].as_str().unwrap().to_string();
    let (status, other) = create_machine(&daemon, &sh_config("sleep 3600")).await;
    assert_eq!(status, 200, "{other}");
    let other = other["id"].as_str().unwrap().to_string();
    daemon.wait_state(&id, "started", 30).await;
    daemon.wait_state(&other, "started", 30).await;

    let size = root_size_kib(&daemon, &id).await;
    assert!(is_gb(size, 1), "df / in a 1 GB machine says {size} KiB");
    let size = root_size_kib(&daemon, &other).await;
    assert!(
        is_gb(size, roost_machines::DEFAULT_ROOTFS_GB),
        "df / in a machine of the default size says {size} KiB"
    );

    let kept = daemon.sh(&id, "echo kept > /root/marker && sync").await;
    assert_eq!(kept.exit_code, 0, "{kept:?}");
    let host_free = free_bytes(&daemon.data_dir());
    let filled = sh_for(
        &daemon,
        &id,
        "dd if=/dev/zero of=/fill bs=1M count=2048 conv=fsync",
        180,
    )
    .await;
    assert_ne!(filled.exit_code, 0, "dd wrote 2 GiB into 1 GB: {filled:?}");
    assert!(
        filled.stderr.contains("No space left on device"),
        "{filled:?}"
    );
    let used = host_free.saturating_sub(free_bytes(&daemon.data_dir()));
    assert!(
        used < 1_200 << 20,
        "filling a 1 GB machine took {used} bytes of the host's disk"
    );
    let written = daemon
        .sh(&other, "echo fine > /root/other && cat /root/other")
        .await;
    assert_eq!(written.stdout, "fine\n", "{written:?}");

    let (status, body) = on_machine(&daemon, Method::POST, &id, "/stop").await;
    assert_eq!(status, 200, "{body}");
    daemon.wait_state(&id, "stopped", 30).await;
    let (status, body) = on_machine(&daemon, Method::POST, &id, "/start").await;
    assert_eq!(status, 200, "{body}");
    daemon.wait_state(&id, "started", 30).await;
    let marker = daemon.sh(&id, "cat /root/marker && rm /fill").await;
    assert_eq!(marker.stdout, "kept\n", "{marker:?}");

    let path = format!("/v1/apps/{APP}/machines/{id}");
    let update = |gb: u64| {
        let mut config = small.clone();
        config.rootfs = Some(roost_types::RootfsConfig {
            size_gb: Some(gb),
            ..Default::default()
        });
        daemon.call(Method::POST, &path, Some(json!({ "config": config })))
    };
    let (status, body) = update(2).await;
    assert_eq!(status, 200, "{body}");
    daemon.wait_state(&id, "started", 30).await;
    let size = root_size_kib(&daemon, &id).await;
    assert!(is_gb(size, 2), "df / after growing to 2 GB says {size} KiB");
    let marker = daemon.sh(&id, "cat /root/marker").await;
    assert_eq!(marker.stdout, "kept\n", "{marker:?}");
    let (status, body) = update(1).await;
    assert_refused(status, &body, "can only grow");

    for machine in [&id, &other] {
        let (status, body) = on_machine(&daemon, Method::DELETE, machine, "?force=true").await;
        assert_eq!(status, 200, "{body}");
    }
    let data = daemon.data_dir();
    let loops = common::loop_devices_left_under(&data, 10).await;
    assert!(
        loops.is_empty(),
        "loop devices outlived their machines: {loops:?}"
    );
    let mounts = common::mounts_under(&data);
    assert!(
        mounts.is_empty(),
        "mounts outlived their machines: {mounts:?}"
    );
    for machine in [&id, &other] {
        assert!(!data.join("machines").join(machine).exists());
    }
}
