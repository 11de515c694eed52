//! Unpacking: attributes, hostile layers, whiteouts.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use roost_image::ImageError;
use roost_testkit::layer::{LayerBuilder, MTIME};
use tar::EntryType;

use crate::common::{exists, Fixture};

/// A layer of one unvalidated entry.
fn raw(kind: EntryType, name: &[u8], link: &[u8]) -> LayerBuilder {
    let mut layer = LayerBuilder::new();
    layer.raw(kind, name, link, b"");
    layer
}

/// Imports `layer` expecting it to be rejected for `entry`, and checks nothing was kept.
fn assert_rejected(fx: &Fixture, layer: LayerBuilder, entry: &str, reason: &str) {
    let err = fx.import_layers(vec![layer.into_tar()]).unwrap_err();
    match &err {
        ImageError::UnsafeLayerEntry { path, .. } => assert_eq!(path, entry, "{err}"),
        other => panic!("expected UnsafeLayerEntry for {entry}, got {other}"),
    }
    assert!(err.to_string().contains(reason), "{err}");
    fx.assert_nothing_left();
}

#[test]
fn attributes_are_preserved() {
    let fx = Fixture::new();
    let mut layer = LayerBuilder::new();
    layer
        .owner(1234, 5678)
        .dir("srv", 0o750)
        .file("srv/suid", 0o4755, b"#!/bin/sh\n")
        .file("srv/sgid", 0o2711, b"")
        .symlink("srv/link", "suid")
        .hardlink("srv/hard", "srv/suid");
    let image = fx.import_layers(vec![layer.into_tar()]).unwrap();
    let root = fx.layer_dir(&image, 0);
    let check = |rel: &str, mode: u32| {
        let meta = fs::symlink_metadata(root.join(rel)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678), "{rel} owner");
        assert_eq!(meta.mtime(), MTIME as i64, "{rel} mtime");
        if mode != 0 {
            assert_eq!(meta.permissions().mode() & 0o7777, mode, "{rel} mode");
        }
    };
    check("srv", 0o750);
    check("srv/suid", 0o4755);
    check("srv/sgid", 0o2711);
    check("srv/link", 0);
    let suid = fs::metadata(root.join("srv/suid")).unwrap();
    assert_eq!(
        fs::metadata(root.join("srv/hard")).unwrap().ino(),
        suid.ino()
    );
    assert_eq!(
        fs::read_link(root.join("srv/link")).unwrap().to_str(),
        Some("suid")
    );
}

#[test]
fn parent_directories_are_implied() {
    let fx = Fixture::new();
    let mut layer = LayerBuilder::new();
    layer.file("a/b/c", 0o600, b"deep");
    let image = fx.import_layers(vec![layer.into_tar()]).unwrap();
    let root = fx.layer_dir(&image, 0);
    assert_eq!(
        fs::metadata(root.join("a/b")).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(fs::read(root.join("a/b/c")).unwrap(), b"deep");
}

#[test]
fn parent_dir_components_are_rejected() {
    let fx = Fixture::new();
    let layer = raw(EntryType::Regular, b"../escape", b"");
    assert_rejected(&fx, layer, "../escape", "'..'");
    let mut layer = LayerBuilder::new();
    layer
        .dir("a", 0o755)
        .raw(EntryType::Regular, b"a/../../escape", b"", b"x");
    assert_rejected(&fx, layer, "a/../../escape", "'..'");
    assert!(!exists(&fx.dir.path().join("escape")));
}

#[test]
fn absolute_paths_are_rejected() {
    let fx = Fixture::new();
    let layer = raw(EntryType::Regular, b"/etc/roost-test-escape", b"");
    assert_rejected(&fx, layer, "/etc/roost-test-escape", "absolute");
    assert!(!exists(Path::new("/etc/roost-test-escape")));
}

#[test]
fn entries_are_never_written_through_a_symlinked_parent() {
    let fx = Fixture::new();
    let victim = fx.path("victim");
    let mut layer = LayerBuilder::new();
    layer
        .symlink("link", victim.to_str().unwrap())
        .file("link/planted", 0o644, b"x");
    assert_rejected(&fx, layer, "link/planted", "'link' is a symlink");
    let mut layer = LayerBuilder::new();
    layer.symlink("up", "..").dir("up/escape", 0o755);
    assert_rejected(&fx, layer, "up/escape", "'up' is a symlink");
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
}

#[test]
fn a_symlink_is_replaced_not_written_through() {
    let fx = Fixture::new();
    let victim = fx.path("victim").join("target");
    fs::write(&victim, b"original").unwrap();
    let mut layer = LayerBuilder::new();
    layer
        .symlink("name", victim.to_str().unwrap())
        .file("name", 0o644, b"replaced");
    let image = fx.import_layers(vec![layer.into_tar()]).unwrap();
    let name = fx.layer_dir(&image, 0).join("name");
    assert!(fs::symlink_metadata(&name).unwrap().is_file());
    assert_eq!(fs::read(&name).unwrap(), b"replaced");
    assert_eq!(fs::read(&victim).unwrap(), b"original");
}

#[test]
fn a_file_under_a_regular_file_is_rejected() {
    let fx = Fixture::new();
    let mut layer = LayerBuilder::new();
    layer.file("f", 0o644, b"").file("f/child", 0o644, b"");
    assert_rejected(&fx, layer, "f/child", "not a directory");
}

#[test]
fn hardlinks_must_target_an_earlier_regular_file_of_the_layer() {
    let fx = Fixture::new();
    let victim = fx.path("victim");
    fs::write(victim.join("secret"), b"host data").unwrap();
    let mut missing = LayerBuilder::new();
    missing.hardlink("h", "nothing");
    let mut later = LayerBuilder::new();
    later.hardlink("h", "later").file("later", 0o644, b"");
    let mut to_symlink = LayerBuilder::new();
    to_symlink.symlink("s", "/etc/passwd").hardlink("h", "s");
    let mut to_dir = LayerBuilder::new();
    to_dir.dir("d", 0o755).hardlink("h", "d");
    for (case, layer) in [
        ("missing", missing),
        ("later", later),
        ("host absolute", raw(EntryType::Link, b"h", b"/etc/passwd")),
        (
            "parent dir",
            raw(EntryType::Link, b"h", b"../victim/secret"),
        ),
        ("to a symlink", to_symlink),
        ("to a directory", to_dir),
    ] {
        let err = fx.import_layers(vec![layer.into_tar()]).unwrap_err();
        assert!(
            matches!(&err, ImageError::UnsafeLayerEntry { path, .. } if path == "h"),
            "{case}: {err}"
        );
        fx.assert_nothing_left();
    }
    let mut layer = LayerBuilder::new();
    layer
        .symlink("d", victim.to_str().unwrap())
        .hardlink("h", "d/secret");
    assert_rejected(&fx, layer, "h", "not a regular file earlier in this layer");
    assert_eq!(fs::metadata(victim.join("secret")).unwrap().nlink(), 1);
}

#[test]
fn device_nodes_and_fifos_are_skipped() {
    let fx = Fixture::new();
    let mut layer = LayerBuilder::new();
    layer
        .dir("dev", 0o755)
        .special(EntryType::Char, "dev/null", 1, 3)
        .special(EntryType::Block, "dev/sda", 8, 0)
        .special(EntryType::Fifo, "dev/pipe", 0, 0)
        .file("dev/keep", 0o644, b"");
    let image = fx.import_layers(vec![layer.into_tar()]).unwrap();
    let dev = fx.layer_dir(&image, 0).join("dev");
    let names: Vec<String> = fs::read_dir(dev)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["keep"]);
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let fx = Fixture::new();
    let mut lower = LayerBuilder::new();
    lower
        .file("etc/gone", 0o644, b"lower")
        .file("etc/kept", 0o644, b"lower")
        .file("opaque/hidden", 0o644, b"lower");
    let mut upper = LayerBuilder::new();
    upper
        .file("etc/.wh.gone", 0o644, b"")
        .file("opaque/.wh..wh..opq", 0o644, b"")
        .file("opaque/new", 0o644, b"upper")
        .file(".wh.rootfile", 0o644, b"");
    let image = fx
        .import_layers(vec![lower.into_tar(), upper.into_tar()])
        .unwrap();
    let top = fx.layer_dir(&image, 1);
    let whiteout = fs::symlink_metadata(top.join("etc/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert!(fs::symlink_metadata(top.join("rootfile"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(!exists(&top.join("etc/.wh.gone")) && !exists(&top.join("opaque/.wh..wh..opq")));
    assert_eq!(
        xattr::get(top.join("opaque"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );

    let merged = OverlayMount::new(&fx, &fx.store.layer_paths(&image).unwrap());
    let m = merged.path();
    assert!(!exists(&m.join("etc/gone")));
    assert_eq!(fs::read(m.join("etc/kept")).unwrap(), b"lower");
    assert!(!exists(&m.join("opaque/hidden")));
    assert_eq!(fs::read(m.join("opaque/new")).unwrap(), b"upper");
}

#[test]
fn malformed_whiteouts_are_rejected() {
    let fx = Fixture::new();
    let layer = raw(EntryType::Regular, b".wh...", b"");
    assert_rejected(&fx, layer, ".wh...", "whiteout does not name a file");
}

/// A read-only overlay of layer directories, unmounted on drop.
struct OverlayMount {
    dir: std::path::PathBuf,
}

impl OverlayMount {
    fn new(fx: &Fixture, layers: &[std::path::PathBuf]) -> OverlayMount {
        let dir = fx.path("merged");
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        nix::mount::mount(
            Some("overlay"),
            &dir,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(format!("lowerdir={}", lower.join(":")).as_str()),
        )
        .expect("mounting overlay (tests run as root)");
        OverlayMount { dir }
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A GNU sparse entry with one data block at `offset` and the given claimed size.
fn sparse_layer(name: &str, real_size: u64, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(EntryType::GNUSparse);
    header.set_path(name).unwrap();
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_size(data.len() as u64);
    let gnu = header.as_gnu_mut().unwrap();
    gnu.set_real_size(real_size);
    gnu.sparse[0].set_offset(offset);
    gnu.sparse[0].set_length(data.len() as u64);
    // GNU tar ends the map with an empty chunk at the end of the file.
    gnu.sparse[1].set_offset(real_size);
    gnu.sparse[1].set_length(0);
    header.set_cksum();
    let mut tar = tar::Builder::new(Vec::new());
    tar.append(&header, data).unwrap();
    tar.into_inner().unwrap()
}

#[test]
fn huge_sparse_files_are_refused() {
    let fx = Fixture::new();
    let layer = sparse_layer("lastlog", 1 << 40, 1 << 39, &[7u8; 512]);
    let err = fx.import_layers(vec![layer]).unwrap_err();
    assert!(
        matches!(&err, ImageError::UnsafeLayerEntry { path, .. } if path == "lastlog"),
        "{err}"
    );
    assert!(err.to_string().contains("sparse file claiming"), "{err}");
    fx.assert_nothing_left();
}

#[test]
fn sparse_files_and_zeros_stay_holes() {
    let fx = Fixture::new();
    let sparse = sparse_layer("sparse", 64 << 20, 32 << 20, &[7u8; 512]);
    let mut zeros = LayerBuilder::new();
    zeros.file("zeros", 0o644, &vec![0u8; 16 << 20]);
    let image = fx.import_layers(vec![sparse, zeros.into_tar()]).unwrap();
    let sparse = fs::metadata(fx.layer_dir(&image, 0).join("sparse")).unwrap();
    assert_eq!(sparse.len(), 64 << 20);
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "{} blocks",
        sparse.blocks()
    );
    let content = fs::read(fx.layer_dir(&image, 0).join("sparse")).unwrap();
    assert_eq!(content[32 << 20], 7);
    assert_eq!(content[(32 << 20) - 1], 0);
    let zeros = fs::metadata(fx.layer_dir(&image, 1).join("zeros")).unwrap();
    assert_eq!(zeros.len(), 16 << 20);
    assert!(zeros.blocks() * 512 < 1 << 20, "{} blocks", zeros.blocks());
}
