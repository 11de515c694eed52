//! OCI runtime-spec bundles: turning a machine's configuration into the
//! `config.json` that crun or runc executes.
//!
//! Every machine gets the same hardening (Docker's default capability set
//! minus `CAP_NET_RAW`, `no_new_privs`, a seccomp profile, masked `/proc`
//! entries, its own network namespace) so that the orchestrator cannot
//! forget one of them. The network namespace is either a fresh one with
//! only loopback or, with [`BundleConfig::netns`], one prepared beforehand
//! (roost-net's, with the machine's private address) that the container
//! joins by path, so starting it does no network setup.

use std::fs;
use std::path::{Component, Path, PathBuf};

use serde_json::{json, Value};

use crate::exec::check_process_strings;
use crate::{host, seccomp, RuntimeError};

/// Where tini is bind-mounted inside every machine.
pub const INIT_PATH: &str = "/.roost/init";

/// `$PATH` for machines whose environment does not set one.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// CFS period; `cpus` is turned into a quota of that many periods.
const CPU_PERIOD_US: u64 = 100_000;

/// Upper bound on tasks per machine: stops fork bombs, far above what real
/// workloads use.
const PIDS_LIMIT: i64 = 4096;

/// Open-file limit, the same as Docker's default so software tuned for
/// containers behaves the same here. Capped at the daemon's own hard limit:
/// raising it needs `CAP_SYS_RESOURCE`, which sandboxed hosts may not grant.
const NOFILE_LIMIT: u64 = 1_048_576;

/// Docker's default capabilities minus `CAP_NET_RAW` (raw sockets allow
/// spoofing on shared networks and are rarely needed; `ping` is the usual
/// victim).
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `/proc` and `/sys` entries that leak host information or allow host
/// changes; hidden the same way Docker hides them.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// `/proc` entries that stay visible but read-only.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything needed to write a machine's OCI `config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleConfig {
    /// Hostname inside the machine's UTS namespace.
    pub hostname: String,
    /// The main process and its arguments; tini runs it as its child.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs; a default `PATH` is added when none is given.
    pub env: Vec<String>,
    /// Absolute working directory of the main process.
    pub cwd: String,
    /// User the main process runs as.
    pub uid: u32,
    /// Group the main process runs as.
    pub gid: u32,
    /// Memory limit in MiB; swap is not allowed on top of it.
    pub memory_mb: Option<u64>,
    /// CPU limit as a number of whole CPUs (CFS quota).
    pub cpus: Option<u32>,
    /// Root filesystem directory, usually an overlay from [`crate::rootfs`].
    pub rootfs: PathBuf,
    /// Cgroup path relative to the cgroup root, e.g. `roost/<machine id>`.
    pub cgroup_name: String,
    /// Give the main process a pseudo terminal (Fly's `init.tty`); its
    /// output still goes to the machine's log.
    pub terminal: bool,
    /// Host directories (volumes) and files (`/etc/resolv.conf`)
    /// bind-mounted into the machine.
    pub mounts: Vec<BindMount>,
    /// A network namespace file (a bind-mounted `/proc/<pid>/ns/net`) the
    /// machine joins; `None` gives it a fresh namespace with only loopback.
    pub netns: Option<PathBuf>,
}

/// A host directory or file the machine sees at `destination`, read-write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute host path; a mount point of its own (a volume's mount).
    pub source: PathBuf,
    /// Absolute path inside the machine; created if missing.
    pub destination: String,
}

/// Writes `bundle_dir/config.json` for `cfg`, atomically (temp file, fsync,
/// rename, fsync of the directory) so a crash never leaves a torn config
/// that a later start would trip over.
///
/// Fails with [`RuntimeError::NotInstalled`] when `tini-static` is missing
/// and [`RuntimeError::InvalidInput`] when `cfg` is unusable; in both cases
/// nothing is written.
pub fn write_bundle(bundle_dir: &Path, cfg: &BundleConfig) -> Result<(), RuntimeError> {
    validate(cfg)?;
    let init = host::find_program("tini-static", "tini")?;
    let spec = spec(cfg, &init)?;
    fs::create_dir_all(bundle_dir).map_err(|err| {
        RuntimeError::io(
            format!("cannot create bundle directory {}", bundle_dir.display()),
            err,
        )
    })?;
    write_config(&bundle_dir.join("config.json"), &spec)?;
    tracing::debug!(bundle = %bundle_dir.display(), "wrote OCI bundle config");
    Ok(())
}

/// The environment the main process of the bundle in `bundle_dir` starts
/// with (its `config.json`'s `process.env`): what exec'd processes get too,
/// so they see what the main process sees.
pub fn bundle_env(bundle_dir: &Path) -> Result<Vec<String>, RuntimeError> {
    let (path, mut config) = read_config(bundle_dir)?;
    let env = env_of(&mut config, &path)?.take();
    serde_json::from_value(env).map_err(|err| {
        RuntimeError::io(
            format!("{}: process.env is not a list of strings", path.display()),
            std::io::Error::other(err),
        )
    })
}

/// Makes `env` (with [`write_bundle`]'s default `PATH`) the main process's
/// environment in the bundle in `bundle_dir`, for its next start. The
/// environment changes between starts (app secrets) while the rest of the
/// bundle does not, so only `process.env` is replaced, and `config.json`
/// is rewritten (atomically, so a crash leaves the old or the new one)
/// only when it differs: an unchanged environment costs one read. Returns
/// whether it was rewritten.
pub fn set_bundle_env(bundle_dir: &Path, env: &[String]) -> Result<bool, RuntimeError> {
    check_process_strings("env", env, true)?;
    let (path, mut config) = read_config(bundle_dir)?;
    let current = env_of(&mut config, &path)?;
    let wanted = Value::from(process_env(env));
    if *current == wanted {
        return Ok(false);
    }
    *current = wanted;
    write_config(&path, &config)?;
    Ok(true)
}

/// Turns the default `config.json` an OCI runtime's own `spec` command
/// wrote into `bundle_dir` into one that runs `args` on `rootfs` in the
/// namespaces every machine gets, and nothing else of a machine's bundle
/// (no init, seccomp profile, masked paths or limits): the plain bundle a
/// benchmark runs beside roost's, to show what roost's own work costs.
pub fn write_plain_bundle(
    bundle_dir: &Path,
    rootfs: &Path,
    args: &[String],
) -> Result<(), RuntimeError> {
    let (path, mut config) = read_config(bundle_dir)?;
    config["process"]["args"] = json!(args);
    config["process"]["terminal"] = json!(false);
    config["root"]["path"] = json!(utf8(rootfs, "rootfs")?);
    config["linux"]["namespaces"] = namespaces(json!({ "type": "network" }));
    write_config(&path, &config)
}

/// The path of `bundle_dir`'s `config.json` and its contents.
fn read_config(bundle_dir: &Path) -> Result<(PathBuf, Value), RuntimeError> {
    let path = bundle_dir.join("config.json");
    let bytes = fs::read(&path)
        .map_err(|err| RuntimeError::io(format!("cannot read {}", path.display()), err))?;
    let config = serde_json::from_slice(&bytes).map_err(|err| {
        RuntimeError::io(
            format!("{} is not valid JSON", path.display()),
            std::io::Error::other(err),
        )
    })?;
    Ok((path, config))
}

fn env_of<'a>(config: &'a mut Value, path: &Path) -> Result<&'a mut Value, RuntimeError> {
    config.pointer_mut("/process/env").ok_or_else(|| {
        RuntimeError::io(
            format!("{} has no process.env", path.display()),
            std::io::Error::from(std::io::ErrorKind::InvalidData),
        )
    })
}

/// Replaces the `config.json` at `path` with `config`.
fn write_config(path: &Path, config: &Value) -> Result<(), RuntimeError> {
    let bytes = serde_json::to_vec_pretty(config).map_err(|err| {
        RuntimeError::io("cannot serialize config.json", std::io::Error::other(err))
    })?;
    write_atomically(path, &bytes)
}

/// Replaces `path` with `contents` so readers see either the old or the new
/// file, never a partial one, even across a power loss.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), RuntimeError> {
    roost_atomic_file::write(path, contents, 0o600)
        .map_err(|e| RuntimeError::io(format!("cannot write {}", path.display()), e))
}

fn validate(cfg: &BundleConfig) -> Result<(), RuntimeError> {
    if cfg.args.is_empty() {
        return Err(RuntimeError::invalid(
            "args",
            "a machine needs a command to run; args is empty",
        ));
    }
    let hostname_ok = !cfg.hostname.is_empty()
        && cfg.hostname.len() <= 64
        && cfg
            .hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !hostname_ok {
        return Err(RuntimeError::invalid(
            "hostname",
            format!(
                "{:?}: use 1 to 64 ASCII letters, digits, '-' or '.'",
                cfg.hostname
            ),
        ));
    }
    check_process_strings("args", &cfg.args, false)?;
    check_process_strings("env", &cfg.env, true)?;
    if !cfg.cwd.starts_with('/') {
        return Err(RuntimeError::invalid(
            "cwd",
            format!("{:?} must be an absolute path inside the machine", cfg.cwd),
        ));
    }
    if cfg.memory_mb == Some(0) || cfg.cpus == Some(0) {
        return Err(RuntimeError::invalid(
            "resources",
            "memory_mb and cpus must be at least 1 when set",
        ));
    }
    if !cfg.rootfs.is_absolute() || !cfg.rootfs.is_dir() {
        return Err(RuntimeError::invalid(
            "rootfs",
            format!(
                "{} must be an existing absolute directory",
                cfg.rootfs.display()
            ),
        ));
    }
    for mount in &cfg.mounts {
        let plain = Path::new(&mount.destination)
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !mount.source.is_absolute() || !mount.destination.starts_with('/') || !plain {
            return Err(RuntimeError::invalid(
                "mounts",
                format!(
                    "{} -> {:?}: both paths must be absolute, without '.' or '..'",
                    mount.source.display(),
                    mount.destination
                ),
            ));
        }
    }
    if let Some(netns) = &cfg.netns {
        if !netns.is_absolute() {
            return Err(RuntimeError::invalid(
                "netns",
                format!("{} must be an absolute path", netns.display()),
            ));
        }
    }
    validate_cgroup_name(&cfg.cgroup_name)
}

/// Cgroup names become paths under every controller; anything but plain
/// relative components could escape roost's subtree.
fn validate_cgroup_name(name: &str) -> Result<(), RuntimeError> {
    let path = Path::new(name);
    let plain = !name.is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if plain {
        return Ok(());
    }
    Err(RuntimeError::invalid(
        "cgroup_name",
        format!("{name:?}: use a relative path like \"roost/<machine id>\" of ASCII letters, digits, '-', '_', '.'"),
    ))
}

fn spec(cfg: &BundleConfig, init: &Path) -> Result<Value, RuntimeError> {
    let rootfs = utf8(&cfg.rootfs, "rootfs")?;
    let init = utf8(init, "tini-static path")?;
    let mut args = vec![INIT_PATH.to_owned(), "--".to_owned()];
    args.extend(cfg.args.iter().cloned());
    let network = match &cfg.netns {
        Some(path) => json!({ "type": "network", "path": utf8(path, "netns")? }),
        None => json!({ "type": "network" }),
    };

    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process_spec(&ProcessSpec {
            terminal: cfg.terminal,
            uid: cfg.uid,
            gid: cfg.gid,
            args: &args,
            env: &cfg.env,
            cwd: &cfg.cwd,
        }),
        "root": { "path": rootfs, "readonly": false },
        "hostname": cfg.hostname,
        "mounts": mounts(init, &cfg.mounts)?,
        "linux": {
            "namespaces": namespaces(network),
            "resources": resources(cfg),
            // An absolute path is interpreted from the root of every
            // hierarchy (v1 controllers, or the v2 tree) by both crun and
            // runc when they use their cgroupfs driver, which roost does.
            "cgroupsPath": format!("/{}", cfg.cgroup_name),
            "seccomp": seccomp::profile(),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }))
}

/// The namespaces of every machine, `network` among them (a fresh one, or
/// one joined by path).
fn namespaces(network: Value) -> Value {
    json!([
        { "type": "pid" },
        { "type": "mount" },
        { "type": "uts" },
        { "type": "ipc" },
        network,
        { "type": "cgroup" },
    ])
}

/// What differs between a machine's processes: its main process and
/// every exec'd one.
pub(crate) struct ProcessSpec<'a> {
    pub terminal: bool,
    pub uid: u32,
    pub gid: u32,
    pub args: &'a [String],
    /// `KEY=VALUE` pairs; [`DEFAULT_PATH`] is added when none sets `PATH`.
    pub env: &'a [String],
    pub cwd: &'a str,
}

/// An OCI `process` object with the hardening every process of a machine
/// gets (capabilities, rlimits, `no_new_privs`), so an exec'd command has
/// exactly the main process's privileges.
pub(crate) fn process_spec(process: &ProcessSpec<'_>) -> Value {
    let env = process_env(process.env);
    let nofile = NOFILE_LIMIT.min(own_nofile_hard_limit());
    json!({
        "terminal": process.terminal,
        "user": { "uid": process.uid, "gid": process.gid },
        "args": process.args,
        "env": env,
        "cwd": process.cwd,
        "capabilities": {
            "bounding": CAPABILITIES,
            "effective": CAPABILITIES,
            "permitted": CAPABILITIES,
        },
        "rlimits": [
            { "type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile },
        ],
        "noNewPrivileges": true,
    })
}

/// A process's environment: `env`, after [`DEFAULT_PATH`] when `env` sets
/// no `PATH`.
fn process_env(env: &[String]) -> Vec<String> {
    let mut all = Vec::with_capacity(env.len() + 1);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        all.push(DEFAULT_PATH.to_owned());
    }
    all.extend(env.iter().cloned());
    all
}

fn mounts(init: &str, binds: &[BindMount]) -> Result<Value, RuntimeError> {
    let mut mounts = json!([
        { "destination": "/proc", "type": "proc", "source": "proc",
          "options": ["nosuid", "noexec", "nodev"] },
        { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
          "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
        { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
          "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
        { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
          "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
        { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
          "options": ["nosuid", "noexec", "nodev"] },
        { "destination": "/sys", "type": "sysfs", "source": "sysfs",
          "options": ["nosuid", "noexec", "nodev", "ro"] },
        // Read-only and namespaced: the machine can read its own limits
        // (memory.limit_in_bytes, cpu.cfs_quota_us or memory.max, cpu.max).
        { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
          "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] },
        { "destination": INIT_PATH, "type": "bind", "source": init,
          "options": ["bind", "ro", "nosuid", "nodev"] },
    ]);
    if let Value::Array(list) = &mut mounts {
        for bind in binds {
            list.push(json!({
                "destination": bind.destination,
                "type": "bind",
                "source": utf8(&bind.source, "mount source")?,
                "options": ["rbind", "rw", "nosuid", "nodev"],
            }));
        }
    }
    Ok(mounts)
}

fn resources(cfg: &BundleConfig) -> Value {
    let mut resources = json!({
        "devices": [{ "allow": false, "access": "rwm" }],
        "pids": { "limit": PIDS_LIMIT },
    });
    if let Some(mb) = cfg.memory_mb {
        let bytes = mb.saturating_mul(1024 * 1024);
        // OCI's `swap` is memory+swap, so equal values mean no swap at all.
        resources["memory"] = json!({ "limit": bytes, "swap": bytes });
    }
    if let Some(cpus) = cfg.cpus {
        resources["cpu"] = json!({
            "quota": u64::from(cpus) * CPU_PERIOD_US,
            "period": CPU_PERIOD_US,
        });
    }
    resources
}

fn own_nofile_hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return NOFILE_LIMIT;
    }
    limit.rlim_max
}

fn utf8<'a>(path: &'a Path, what: &'static str) -> Result<&'a str, RuntimeError> {
    path.to_str().ok_or_else(|| {
        RuntimeError::invalid(what, format!("{} is not valid UTF-8", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rootfs: &Path) -> BundleConfig {
        BundleConfig {
            hostname: "m1".into(),
            args: vec!["sleep".into(), "1".into()],
            env: vec!["A=b".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            memory_mb: Some(64),
            cpus: Some(2),
            rootfs: rootfs.to_owned(),
            cgroup_name: "roost/m1".into(),
            terminal: false,
            mounts: vec![BindMount {
                source: "/var/lib/roost/volumes/vol_1/mnt".into(),
                destination: "/data".into(),
            }],
            netns: None,
        }
    }

    #[test]
    fn spec_wraps_args_in_init_and_sets_limits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(&config(dir.path()), Path::new("/usr/bin/tini-static")).expect("spec");
        assert_eq!(
            spec["process"]["args"],
            json!(["/.roost/init", "--", "sleep", "1"])
        );
        assert_eq!(spec["process"]["env"][0], DEFAULT_PATH);
        assert_eq!(
            spec["linux"]["resources"]["memory"]["limit"],
            64 * 1024 * 1024
        );
        assert_eq!(
            spec["linux"]["resources"]["memory"]["swap"],
            64 * 1024 * 1024
        );
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 200_000);
        assert_eq!(spec["linux"]["cgroupsPath"], "/roost/m1");
        let volume = spec["mounts"]
            .as_array()
            .and_then(|m| m.last())
            .expect("mounts");
        assert_eq!(volume["destination"], "/data");
        assert_eq!(volume["source"], "/var/lib/roost/volumes/vol_1/mnt");
        assert_eq!(spec["linux"]["namespaces"][4], json!({ "type": "network" }));
        let joined = BundleConfig {
            netns: Some("/run/roost/netns/m1".into()),
            ..config(dir.path())
        };
        let spec_joined = super::spec(&joined, Path::new("/usr/bin/tini-static")).expect("spec");
        assert_eq!(
            spec_joined["linux"]["namespaces"][4],
            json!({ "type": "network", "path": "/run/roost/netns/m1" })
        );
        let caps = spec["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("caps");
        assert!(!caps.iter().any(|c| c == "CAP_NET_RAW"));
        assert_eq!(caps.len(), 13);
    }

    #[test]
    fn the_environment_is_rewritten_only_when_it_changed() {
        let rootfs = tempfile::tempdir().expect("tempdir");
        let bundle = tempfile::tempdir().expect("tempdir");
        let path = bundle.path().join("config.json");
        let written =
            spec(&config(rootfs.path()), Path::new("/usr/bin/tini-static")).expect("spec");
        write_config(&path, &written).expect("write");
        let before = fs::metadata(&path)
            .expect("stat")
            .modified()
            .expect("mtime");
        assert!(!set_bundle_env(bundle.path(), &["A=b".into()]).expect("same env"));
        assert_eq!(
            fs::metadata(&path)
                .expect("stat")
                .modified()
                .expect("mtime"),
            before
        );
        assert_eq!(
            bundle_env(bundle.path()).expect("env"),
            [DEFAULT_PATH.to_string(), "A=b".into()]
        );
        let changed = vec!["PATH=/bin".to_string(), "A=c".into()];
        assert!(set_bundle_env(bundle.path(), &changed).expect("new env"));
        assert_eq!(bundle_env(bundle.path()).expect("env"), changed);
        let (_, rewritten) = read_config(bundle.path()).expect("read");
        assert_eq!(rewritten["process"]["args"], written["process"]["args"]);
        assert_eq!(rewritten["linux"], written["linux"]);
        let err = set_bundle_env(bundle.path(), &["NOEQUALS".into()]).expect_err("refused");
        assert!(matches!(err, RuntimeError::InvalidInput { .. }), "{err}");
        assert_eq!(bundle_env(bundle.path()).expect("env"), changed);
    }

    #[test]
    fn a_plain_bundle_runs_the_args_in_a_machines_namespaces() {
        let bundle = tempfile::tempdir().expect("tempdir");
        let path = bundle.path().join("config.json");
        let default = json!({
            "process": { "terminal": true, "args": ["sh"], "env": ["TERM=xterm"] },
            "root": { "path": "rootfs", "readonly": true },
            "linux": { "namespaces": [{ "type": "pid" }] },
        });
        write_config(&path, &default).expect("write");
        let args = ["sleep".to_string(), "1000".into()];
        write_plain_bundle(bundle.path(), Path::new("/srv/tree"), &args).expect("plain");
        let (_, plain) = read_config(bundle.path()).expect("read");
        assert_eq!(plain["process"]["args"], json!(["sleep", "1000"]));
        assert_eq!(plain["process"]["terminal"], false);
        assert_eq!(plain["process"]["env"], json!(["TERM=xterm"]));
        assert_eq!(
            plain["root"],
            json!({ "path": "/srv/tree", "readonly": true })
        );
        assert_eq!(
            plain["linux"]["namespaces"],
            namespaces(json!({ "type": "network" }))
        );
        assert_eq!(
            plain["linux"]["namespaces"].as_array().map(Vec::len),
            Some(6)
        );
    }

    #[test]
    fn rejects_bad_configs_without_writing() {
        let rootfs = tempfile::tempdir().expect("tempdir");
        let bundle = tempfile::tempdir().expect("tempdir");
        let good = config(rootfs.path());
        let bad: Vec<BundleConfig> = vec![
            BundleConfig {
                args: vec![],
                ..good.clone()
            },
            BundleConfig {
                hostname: "a b".into(),
                ..good.clone()
            },
            BundleConfig {
                env: vec!["NOEQUALS".into()],
                ..good.clone()
            },
            BundleConfig {
                cwd: "relative".into(),
                ..good.clone()
            },
            BundleConfig {
                memory_mb: Some(0),
                ..good.clone()
            },
            BundleConfig {
                rootfs: rootfs.path().join("missing"),
                ..good.clone()
            },
            BundleConfig {
                cgroup_name: "../escape".into(),
                ..good.clone()
            },
            BundleConfig {
                cgroup_name: "/abs".into(),
                ..good.clone()
            },
            BundleConfig {
                netns: Some("relative/netns".into()),
                ..good.clone()
            },
            BundleConfig {
                mounts: vec![BindMount {
                    source: "/v".into(),
                    destination: "/data/../etc".into(),
                }],
                ..good.clone()
            },
        ];
        for cfg in bad {
            let err = write_bundle(bundle.path(), &cfg).expect_err("must be rejected");
            assert!(matches!(err, RuntimeError::InvalidInput { .. }), "{err}");
        }
        assert!(!bundle.path().join("config.json").exists());
    }
}
