//! The fixtures are valid, reproducible and what they claim to be.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use roost_testkit::{busybox_layout, busybox_rootfs};

fn index_json(layout: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap()
}

#[test]
fn busybox_layout_is_reproducible_and_tagged_latest() {
    let dir = tempfile::tempdir().unwrap();
    let first = busybox_layout(&dir.path().join("a"));
    let second = busybox_layout(&dir.path().join("b"));
    let (first, second) = (index_json(&first), index_json(&second));
    assert_eq!(first, second);
    let entry = &first["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}

#[test]
fn busybox_layout_passes_umoci_validation() {
    let dir = tempfile::tempdir().unwrap();
    let layout = busybox_layout(dir.path());
    let bundle = dir.path().join("bundle");
    roost_testkit::run(
        Command::new("umoci")
            .args(["raw", "unpack", "--rootless", "--image"])
            .arg(format!("{}:latest", layout.display()))
            .arg(&bundle),
    );
    assert!(bundle.join("bin/busybox").is_file());
}

#[test]
fn busybox_rootfs_runs_busybox() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    let output = roost_testkit::run(Command::new(rootfs.join("bin/sh")).args(["-c", "echo ok"]));
    assert_eq!(String::from_utf8_lossy(&output), "ok\n");
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:1000:1000:") && passwd.contains("nobody:x:65534:"));
    assert!(fs::read_to_string(rootfs.join("etc/group"))
        .unwrap()
        .contains("app:x:1000:"));
    assert_eq!(
        fs::metadata(rootfs.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    assert_eq!(fs::metadata(rootfs.join("home/app")).unwrap().uid(), 1000);
    assert!(fs::symlink_metadata(rootfs.join("bin/ls"))
        .unwrap()
        .file_type()
        .is_symlink());
}
