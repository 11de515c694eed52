//! Image pull: roost against `skopeo copy` + `umoci unpack`, from the same local registry, in
//! the same run.
//!
//! The image has five gzip layers of 1 MiB files (about 128 MiB unpacked, content that
//! compresses to roughly 60%, like binaries and text; the last layer adds busybox so
//! machines can run it). It is pushed once to a `docker-registry` on loopback. Then, for each
//! round, interleaved:
//! * **skopeo+umoci**: `skopeo copy docker://... oci:DIR` then `umoci unpack` into a bundle,
//!   timed together: the two-tool way to get an unpacked rootfs from a registry;
//! * **roost**: `POST /v1/images/pull` to a fresh `roost up` (empty store), which downloads,
//!   verifies, unpacks (flushed to disk) and records the image.
//!
//! After the last round it creates two machines from the pulled image and times the second
//! create, reading the daemon's `/proc/PID/io` `rchar` around it to show that create reads no
//! layer blob (the counter would grow by the image size if it did).
//!
//! Run with `cargo bench -p roost --bench pull [-- --rounds N]` (default 3 rounds).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{Daemon, APP};
use roost_testkit::layer::LayerBuilder;
use roost_testkit::oci::{self, ImageSpec};
use roost_testkit::registry::Registry;
use roost_types::{CreateMachineRequest, MachineConfig};
use serde_json::json;

const LAYERS: usize = 4;
const FILES_PER_LAYER: usize = 32;
const FILE_SIZE: usize = 1 << 20;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pull bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("--rounds takes a number")?
        .unwrap_or(3);
    let scratch = tempfile::tempdir()?;
    let layout = scratch.path().join("big-oci");
    let (unpacked, compressed) = write_big_image(&layout);
    let registry = Registry::start(scratch.path());
    registry.push(&layout, "latest", "big", "latest", &[]);
    let reference = format!("{}/big:latest", registry.addr);
    println!(
        "image: {} layers, {:.1} MB unpacked, {:.1} MB compressed",
        LAYERS + 1,
        unpacked as f64 / 1e6,
        compressed as f64 / 1e6
    );

    let (mut tools, mut roost) = (Vec::new(), Vec::new());
    let mut last_daemon = None;
    for round in 0..rounds {
        let dir = scratch.path().join(format!("skopeo-{round}"));
        tools.push(skopeo_umoci(&registry.addr, &dir)?);
        std::fs::remove_dir_all(&dir)?;

        let daemon = Daemon::start_with_args(&["--insecure-registry", &registry.addr]).await;
        let started = Instant::now();
        let (status, body) = daemon
            .call(
                reqwest::Method::POST,
                "/v1/images/pull",
                Some(json!({ "image": reference })),
            )
            .await;
        roost.push(started.elapsed());
        ensure!(status == 201, "roost pull answered {status}: {body}");
        println!(
            "round {}: skopeo+umoci {:>7.0} ms   roost {:>7.0} ms",
            round + 1,
            ms(tools[round]),
            ms(roost[round])
        );
        last_daemon = Some(daemon);
    }
    println!(
        "cold pull+unpack, median of {rounds}: skopeo+umoci {:.0} ms, roost {:.0} ms ({:.2}x)",
        ms(median(&mut tools)),
        ms(median(&mut roost)),
        median(&mut tools).as_secs_f64() / median(&mut roost).as_secs_f64()
    );

    let daemon = last_daemon.context("no round ran")?;
    second_create(&daemon, &reference, compressed).await
}

/// Creates a machine from the pulled image, then times the create of a second one and checks
/// that the daemon read far less than the image's blobs meanwhile.
async fn second_create(daemon: &Daemon, reference: &str, compressed: u64) -> Result<()> {
    let request = CreateMachineRequest {
        config: MachineConfig {
            image: reference.to_owned(),
            ..Default::default()
        },
        ..Default::default()
    };
    let client = daemon.client();
    let first = client.create_machine(APP, &request).await?;
    daemon.wait_state(&first.id, "started", 60).await;
    let pid = daemon_pid(daemon)?;
    let read_before = rchar(pid)?;
    let started = Instant::now();
    let second = client.create_machine(APP, &request).await?;
    let elapsed = started.elapsed();
    let read = rchar(pid)? - read_before;
    daemon.wait_state(&second.id, "started", 60).await;
    println!(
        "create of a second machine from the pulled image: {:.1} ms; daemon read {} KB (layer blobs: {:.1} MB)",
        ms(elapsed),
        read / 1000,
        compressed as f64 / 1e6
    );
    ensure!(
        read < compressed / 10,
        "create read {read} bytes, as if it read layer blobs"
    );
    for id in [&first.id, &second.id] {
        client.destroy_machine(APP, id, true).await?;
    }
    Ok(())
}

fn skopeo_umoci(registry: &str, dir: &Path) -> Result<Duration> {
    std::fs::create_dir_all(dir)?;
    let layout = dir.join("oci");
    let started = Instant::now();
    roost_testkit::run(Command::new("skopeo").args([
        "copy".to_owned(),
        "--quiet".to_owned(),
        "--src-tls-verify=false".to_owned(),
        format!("docker://{registry}/big:latest"),
        format!("oci:{}:latest", layout.display()),
    ]));
    roost_testkit::run(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", layout.display()))
            .arg(dir.join("bundle")),
    );
    Ok(started.elapsed())
}

/// Writes the bench image; returns its unpacked and compressed sizes.
fn write_big_image(layout: &Path) -> (u64, u64) {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut layers = Vec::new();
    for layer in 0..LAYERS {
        let mut builder = LayerBuilder::new();
        builder.dir("data", 0o755);
        for file in 0..FILES_PER_LAYER {
            let content: Vec<u8> = (0..FILE_SIZE)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // 16 symbols: about 4 bits of entropy per byte.
                    b"abcdefghijklmnop"[(seed >> 60) as usize]
                })
                .collect();
            builder.file(&format!("data/l{layer}-f{file}"), 0o644, &content);
        }
        layers.push(builder.into_tar());
    }
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static");
    let mut tools = LayerBuilder::new();
    tools
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox)
        .symlink("bin/sh", "busybox")
        .symlink("bin/sleep", "busybox");
    layers.push(tools.into_tar());
    let unpacked = layers.iter().map(|l| l.len() as u64).sum();
    let manifest = oci::write_image(
        layout,
        &ImageSpec {
            config: json!({ "Cmd": ["/bin/sleep", "1000"] }),
            layers,
            gzip: true,
            docker: false,
        },
    );
    oci::write_index(layout, vec![manifest.tagged("latest")]);
    let compressed = std::fs::read_dir(layout.join("blobs/sha256"))
        .expect("blobs")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    (unpacked, compressed)
}

/// The pid of the `roost up` serving `daemon`: the process listening on its port.
fn daemon_pid(daemon: &Daemon) -> Result<u32> {
    let data_dir = daemon.data_dir();
    let needle = data_dir.to_string_lossy();
    common::processes_mentioning(&needle)
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("\0up\0"))
                .unwrap_or(false)
        })
        .context("roost up process not found")
}

fn rchar(pid: u32) -> Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .context("no rchar in /proc/PID/io")?
        .trim()
        .parse()
        .context("rchar is not a number")
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
