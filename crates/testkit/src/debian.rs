//! A real Debian image, built with debootstrap (`minbase`) from Debian's package registry: for
//! the one end-to-end test that runs apt inside a machine, through the egress proxy (issue 16).
//!
//! Building takes about a minute and downloads about 30 MB, so the finished OCI layout is
//! cached in a directory the caller names (a test's `CARGO_TARGET_TMPDIR`) and reused by later
//! runs. The build is bounded in time, and whatever debootstrap mounted inside its target is
//! unmounted before anything is removed, also when it fails or times out.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::oci;

/// The registry's host, for the policy that lets a machine reach it.
pub const REGISTRY_HOST: &str = "deb.debian.org";
/// The suite debootstrap installs (the release the CI hosts run).
pub const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Upper bound on the whole debootstrap run.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
/// Upper bound on each step of the reachability probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the registry answers this host: `Err` says why not, for a test's skip message.
/// One `HEAD` of the suite's `InRelease` file, bounded by [`PROBE_TIMEOUT`] per step.
pub fn registry_reachable() -> Result<(), String> {
    let addrs: Vec<_> = (REGISTRY_HOST, 80)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {REGISTRY_HOST}: {e}"))?
        .collect();
    let addr = addrs
        .first()
        .ok_or_else(|| format!("{REGISTRY_HOST} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(addr, PROBE_TIMEOUT)
        .map_err(|e| format!("cannot connect to {REGISTRY_HOST} ({addr}): {e}"))?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(PROBE_TIMEOUT)))
        .map_err(|e| format!("socket options: {e}"))?;
    let request = format!(
        "HEAD /debian/dists/{SUITE}/InRelease HTTP/1.1\r\nHost: {REGISTRY_HOST}\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending to {REGISTRY_HOST}: {e}"))?;
    let mut head = [0u8; 64];
    let n = stream
        .read(&mut head)
        .map_err(|e| format!("no answer from {REGISTRY_HOST}: {e}"))?;
    let status = String::from_utf8_lossy(&head[..n]);
    match status.split(' ').nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(format!(
            "{REGISTRY_HOST} answered {:?} for the {SUITE} release file",
            status.lines().next().unwrap_or("")
        )),
    }
}

/// The OCI layout of a Debian [`SUITE`] `minbase` image under `cache`, built on first use.
///
/// One uncompressed layer holding the tree debootstrap made, without `/dev` nodes (the runtime
/// provides `/dev`), downloaded packages or package lists (a machine runs `apt-get update`
/// first); `index.json` tags it `latest`; the config's `Cmd` is `sleep infinity`.
pub fn debian_layout(cache: &Path) -> PathBuf {
    let layout = cache.join(format!("debian-{SUITE}-minbase-oci"));
    if layout.join("index.json").is_file() {
        return layout;
    }
    let work = cache.join(format!("debian-build-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("creating {}: {e}", work.display()));
    let rootfs = work.join("rootfs");
    let built = debootstrap(&rootfs);
    unmount_under(&rootfs);
    if let Err(e) = built {
        remove_build(&work);
        panic!("{e}");
    }
    for emptied in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        empty_files_of(&rootfs.join(emptied));
    }
    let tar = work.join("layer.tar");
    crate::run(
        Command::new("tar")
            .args(["--numeric-owner", "--one-file-system", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .args([
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                ".",
            ]),
    );
    let partial = work.join("oci");
    oci::init_layout(&partial);
    let layer = oci::move_blob(&partial, oci::OCI_LAYER_TAR, &tar);
    let config = json!({
        "Cmd": ["sleep", "infinity"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "WorkingDir": "/",
    });
    let config = oci::write_blob(
        &partial,
        oci::OCI_CONFIG,
        &oci::image_config(&config, std::slice::from_ref(&layer.digest)),
    );
    let manifest = oci::write_manifest(&partial, oci::OCI_MANIFEST, &config, &[layer]);
    oci::write_index(&partial, vec![manifest.tagged("latest")]);
    // A concurrent build may have won the race; either layout is the same image.
    if std::fs::rename(&partial, &layout).is_err() && !layout.join("index.json").is_file() {
        remove_build(&work);
        panic!("cannot move the Debian layout into {}", layout.display());
    }
    remove_build(&work);
    layout
}

/// Runs debootstrap into `rootfs`, killing it (and its children) after [`BUILD_TIMEOUT`].
fn debootstrap(rootfs: &Path) -> Result<(), String> {
    let log = rootfs.with_file_name("debootstrap.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let mut child = Command::new("debootstrap")
        .args(["--variant=minbase", SUITE])
        .arg(rootfs)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run debootstrap (apt-get install debootstrap): {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < BUILD_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Ok(None) | Err(_) => {
                // The whole process group: debootstrap runs dpkg and wget as children.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                return Err(format!(
                    "debootstrap did not finish within {BUILD_TIMEOUT:?}: {}",
                    tail(&log)
                ));
            }
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("debootstrap failed ({status}): {}", tail(&log)))
    }
}

/// The last lines of a log, for a panic message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Detaches every mount at or below `dir`, deepest first (debootstrap mounts `/proc` and
/// `/sys` inside its target, and may bind-mount the host's `/dev`).
fn unmount_under(dir: &Path) {
    for mount in mounts_under(dir).iter().rev() {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(mount)
            .stderr(Stdio::null())
            .status();
    }
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|mount| mount.starts_with(dir))
        .collect()
}

/// Removes the build directory, but never while something is still mounted inside it: removing
/// through a bind mount of the host's `/dev` would delete the host's device nodes.
fn remove_build(work: &Path) {
    let left = mounts_under(work);
    assert!(
        left.is_empty(),
        "still mounted under {}, left in place: {left:?}",
        work.display()
    );
    let _ = std::fs::remove_dir_all(work);
}

/// Removes the regular files directly in `dir` (its subdirectories stay, as apt wants them).
fn empty_files_of(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
