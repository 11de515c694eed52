//! The volume layer on real loop devices and ext4: create, attach, grow
//! online, snapshot, restore, fork. Every test cleans its loop devices and
//! mounts up even when it panics.

use roost_volume::{FsType, SnapshotStore, VolumeError, VolumeHost};
use std::io::Write;
use std::path::Path;

const MIB: u64 = 1 << 20;

/// A volume host in a temp dir whose volumes are detached on drop.
struct Fixture {
    host: VolumeHost,
    store: SnapshotStore,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        Fixture {
            host: VolumeHost::open(dir.path().join("volumes")).expect("host"),
            store: SnapshotStore::open(dir.path().join("snapshots")).expect("store"),
            dir,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.host.ids().unwrap_or_default() {
            let _ = self.host.remove(&id);
        }
        let _ = self.host.release_stray_loops(|_| false);
        let _ = self.dir.path();
    }
}

fn write_synced(path: &Path, content: &[u8]) {
    let mut file = std::fs::File::create(path).expect("create");
    file.write_all(content).expect("write");
    file.sync_all().expect("fsync");
}

/// Grows a volume while mounted and while detached; `online` says whether
/// this host can grow a mounted filesystem of type `fs`.
fn grow_and_keep_data(fs: FsType, size: u64, online: bool) {
    let f = Fixture::new();
    f.host.create("v1", size, fs).expect("create");
    let mount = f.host.attach("v1", "m1").expect("attach");
    assert_eq!(f.host.holder("v1").as_deref(), Some("m1"));
    write_synced(&mount.join("note"), b"kept");
    let before = f.host.usage("v1").expect("usage");
    assert_eq!(before.block_size, 4096);
    assert!(before.blocks * 4096 > size * 3 / 4 && before.blocks * 4096 <= size);

    assert_eq!(f.host.grow("v1", 2 * size).expect("grow mounted"), online);
    let after = f.host.usage("v1").expect("usage");
    assert_eq!(
        after.blocks > before.blocks,
        online,
        "{before:?} -> {after:?}"
    );
    assert!(matches!(
        f.host.grow("v1", size),
        Err(VolumeError::Invalid(_))
    ));
    assert!(matches!(
        f.host.attach("v1", "m2"),
        Err(VolumeError::Invalid(_))
    ));

    f.host.detach("v1").expect("detach");
    f.host.detach("v1").expect("detach twice");
    assert!(!f.host.is_mounted("v1"));
    assert_eq!(f.host.holder("v1"), None);
    f.host.grow("v1", 3 * size).expect("grow detached");
    let mount = f.host.attach("v1", "m2").expect("attach again");
    assert_eq!(std::fs::read(mount.join("note")).expect("read"), b"kept");
    let last = f.host.usage("v1").expect("usage");
    assert!(last.blocks * 4096 > 2 * size, "{last:?}");
}

#[test]
fn xfs_volumes_grow_online_and_keep_their_data() {
    grow_and_keep_data(FsType::Xfs, 320 * MIB, true);
}

#[test]
fn ext4_volumes_grow_and_keep_their_data() {
    let online = FsType::host_default() == FsType::Ext4;
    grow_and_keep_data(FsType::Ext4, 64 * MIB, online);
}

#[test]
fn snapshots_restore_old_data_and_deduplicate() {
    let f = Fixture::new();
    f.host.create("v1", 64 * MIB, FsType::Ext4).expect("create");
    let mount = f.host.attach("v1", "m1").expect("attach");
    let data: Vec<u8> = (0..8 * MIB).map(|i| (i * 7 % 251) as u8).collect();
    write_synced(&mount.join("data"), &data);
    write_synced(&mount.join("note"), b"old");

    let first = f
        .host
        .snapshot("v1", &f.store, "s1")
        .expect("snapshot while mounted");
    assert!(first.new_bytes > 0);
    let again = f
        .host
        .snapshot("v1", &f.store, "s2")
        .expect("second snapshot");
    assert!(
        again.new_bytes < 2 * MIB,
        "an unchanged volume added {} bytes",
        again.new_bytes
    );
    write_synced(&mount.join("note"), b"new");

    f.host
        .restore("v2", &f.store, "s1", 96 * MIB)
        .expect("restore into a larger volume");
    let restored = f.host.attach("v2", "m2").expect("attach restored");
    assert_eq!(std::fs::read(restored.join("note")).expect("read"), b"old");
    assert_eq!(std::fs::read(restored.join("data")).expect("read"), data);
    assert!(f.host.usage("v2").expect("usage").blocks > f.host.usage("v1").expect("usage").blocks);
    assert!(matches!(
        f.host.restore("v3", &f.store, "missing", 64 * MIB),
        Err(VolumeError::SnapshotNotFound(_))
    ));
    assert!(!f.host.exists("v3"));

    let before = f.store.disk_usage().expect("usage");
    f.store.delete("s1").expect("delete");
    let freed = f.store.collect_garbage().expect("gc");
    assert!(
        freed < 64 * 1024,
        "s2 still uses s1's data chunks, yet {freed} bytes were freed"
    );
    f.store.delete("s2").expect("delete");
    assert!(f.store.collect_garbage().expect("gc") > 0);
    assert!(f.store.disk_usage().expect("usage") < before);
}

#[test]
fn a_fork_of_a_mounted_volume_diverges() {
    let f = Fixture::new();
    f.host.create("v1", 320 * MIB, FsType::Xfs).expect("create");
    let mount = f.host.attach("v1", "m1").expect("attach");
    write_synced(&mount.join("note"), b"shared");
    f.host
        .fork("v1", "v2", 384 * MIB)
        .expect("fork while mounted");
    let forked = f.host.attach("v2", "m2").expect("attach fork");
    assert_eq!(std::fs::read(forked.join("note")).expect("read"), b"shared");
    write_synced(&forked.join("note"), b"fork");
    write_synced(&mount.join("note"), b"origin");
    assert_eq!(std::fs::read(forked.join("note")).expect("read"), b"fork");
    assert_eq!(std::fs::read(mount.join("note")).expect("read"), b"origin");
    let image = |id: &str| std::fs::metadata(f.host.paths(id).image).expect("image");
    use std::os::unix::fs::MetadataExt;
    assert!(
        image("v2").blocks() * 512 < 96 * MIB,
        "the fork is not sparse"
    );
    assert!(f.host.usage("v2").expect("usage").blocks > f.host.usage("v1").expect("usage").blocks);
}
