//! Volume benchmark: `cargo bench -p roost-volume --bench volumes`.
//!
//! In one run, on real loop devices: creating 1 GiB and 10 GiB volumes
//! (ext4 and XFS), then, on a mounted 1 GiB volume holding 256 MiB of
//! incompressible data, a snapshot and a fork (both live, frozen for the
//! copy) against `cp --sparse=always` of the same image, a restore, and
//! the on-disk size of 7 daily snapshots with 1% of the data rewritten
//! each day. Everything is removed at the end, also on panic.

use roost_volume::{FsType, SnapshotStore, VolumeHost};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const DATA: u64 = 256 * MIB;

/// Detaches and deletes every volume of the bench, even on panic.
struct Bench {
    host: VolumeHost,
    store: SnapshotStore,
    dir: tempfile::TempDir,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for id in self.host.ids().unwrap_or_default() {
            if let Err(err) = self.host.remove(&id) {
                eprintln!("cleanup of {id} failed: {err}");
            }
        }
        let _ = self.host.release_stray_loops(|_| false);
    }
}

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = work();
    (value, start.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Bytes `path` occupies on disk.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Deterministic incompressible bytes (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn main() {
    let root = std::env::var_os("ROOST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(root).expect("bench dir");
    let bench = Bench {
        host: VolumeHost::open(dir.path().join("volumes")).expect("volume host"),
        store: SnapshotStore::open(dir.path().join("snapshots")).expect("snapshot store"),
        dir,
    };
    let host = &bench.host;
    println!(
        "roost volume benchmark ({}; default filesystem on this host: {})\n",
        bench.dir.path().display(),
        FsType::host_default().name()
    );

    println!(
        "{:<44} {:>12} {:>12}",
        "create (sparse image + mkfs)", "time", "on disk"
    );
    for fs in [FsType::Ext4, FsType::Xfs] {
        for size_gb in [1u64, 10] {
            let id = format!("create-{}-{size_gb}", fs.name());
            let ((), took) = timed(|| host.create(&id, size_gb * GIB, fs).expect("create"));
            let label = format!("  {} {size_gb} GiB", fs.name());
            println!(
                "{label:<44} {:>12} {:>12}",
                ms(took),
                mib(allocated(&host.paths(&id).image))
            );
            host.remove(&id).expect("remove");
        }
    }

    let fs = FsType::host_default();
    host.create("src", GIB, fs).expect("create source");
    let mount = host.attach("src", "bench").expect("attach");
    let data_path = mount.join("data");
    {
        let mut file = std::fs::File::create(&data_path).expect("data file");
        for (i, chunk) in (0..DATA / (16 * MIB)).enumerate() {
            file.write_all(&noise((16 * MIB) as usize, chunk + i as u64))
                .expect("write data");
        }
        file.sync_all().expect("fsync data");
    }
    let image = host.paths("src").image;
    println!(
        "\n1 GiB {} volume, 256 MiB of incompressible data, mounted (image uses {} on disk)",
        fs.name(),
        mib(allocated(&image))
    );
    println!("{:<44} {:>12} {:>12}", "operation", "time", "on disk");
    let copy = bench.dir.path().join("cp-copy");
    let (status, cp_took) = timed(|| {
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&image)
            .arg(&copy)
            .status()
            .expect("run cp")
    });
    assert!(status.success(), "cp failed");
    println!(
        "{:<44} {:>12} {:>12}",
        "  cp --sparse=always of the image",
        ms(cp_took),
        mib(allocated(&copy))
    );
    std::fs::remove_file(&copy).expect("remove copy");
    let (info, took) = timed(|| {
        host.snapshot("src", &bench.store, "day0")
            .expect("snapshot")
    });
    println!(
        "{:<44} {:>12} {:>12}",
        "  snapshot (live, frozen during the copy)",
        ms(took),
        mib(bench.store.disk_usage().expect("usage"))
    );
    let ((), took) = timed(|| host.fork("src", "fork", GIB).expect("fork"));
    println!(
        "{:<44} {:>12} {:>12}",
        "  fork (live, frozen during the copy)",
        ms(took),
        mib(allocated(&host.paths("fork").image))
    );
    let ((), took) = timed(|| {
        host.restore("restored", &bench.store, "day0", GIB)
            .expect("restore")
    });
    println!(
        "{:<44} {:>12} {:>12}",
        "  restore of the snapshot into a new volume",
        ms(took),
        mib(allocated(&host.paths("restored").image))
    );

    println!("\n7 daily snapshots, 1% of the data (2.56 MiB, one region) rewritten each day");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&data_path)
        .expect("open data");
    let change = (DATA / 100) as usize;
    let mut total = Duration::ZERO;
    for day in 1..=6u64 {
        let offset = (day * 37 * MIB) % (DATA - change as u64);
        file.write_all_at(&noise(change, 1000 + day), offset)
            .expect("change data");
        file.sync_all().expect("fsync");
        let (_, took) = timed(|| {
            host.snapshot("src", &bench.store, &format!("day{day}"))
                .expect("daily snapshot")
        });
        total += took;
    }
    let store = bench.store.disk_usage().expect("usage");
    let full = allocated(&image);
    println!(
        "{:<44} {:>12}",
        "  snapshot store after 7 snapshots",
        mib(store)
    );
    println!(
        "{:<44} {:>12}",
        "  7 sparse copies (cp --sparse=always)",
        mib(7 * full)
    );
    println!(
        "{:<44} {:>12}",
        "  7 full copies (size_gb each)",
        mib(7 * GIB)
    );
    println!(
        "{:<44} {:>12}",
        "  mean time of the 6 incremental snapshots",
        ms(total / 6)
    );
    println!(
        "\nfirst snapshot: {} stored for {} of volume",
        mib(info.stored_bytes),
        mib(info.volume_size)
    );
}
