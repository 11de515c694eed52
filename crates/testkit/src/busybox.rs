//! A minimal but real Linux userland: the host's busybox-static plus the files a container
//! image is expected to have (`/etc/passwd`, `/tmp`, home directories).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::layer::LayerBuilder;
use crate::oci::{self, ImageSpec};

/// Debian's busybox-static; statically linked, so the image needs no libc.
const HOST_BUSYBOX: &str = "/bin/busybox";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      app:x:1000:1000:app:/home/app:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n";

/// Builds an OCI image layout of the busybox image under `dir` and returns its path.
///
/// The layout has one gzip layer (see [`busybox_rootfs`] for the tree), an image config with
/// `Cmd ["sh"]`, a standard `PATH` and `WorkingDir "/"`, and an `index.json` entry tagged
/// `latest`. Entries have fixed mtimes and owners, so two builds on the same host produce the
/// same manifest digest.
pub fn busybox_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("busybox-oci");
    let spec = ImageSpec {
        config: json!({
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        }),
        layers: vec![busybox_layer()],
        gzip: true,
        docker: false,
    };
    let manifest = oci::write_image(&layout, &spec);
    oci::write_index(&layout, vec![manifest.tagged("latest")]);
    layout
}

/// Unpacks the busybox image's tree into a plain directory under `dir` and returns its path,
/// for running the same userland with crun or podman directly.
///
/// Ownership is preserved, so call it as root (as the test hosts run) to get the same tree the
/// image store would produce.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("busybox-rootfs");
    let layer = busybox_layer();
    let mut archive = tar::Archive::new(layer.as_slice());
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive
        .unpack(&rootfs)
        .unwrap_or_else(|e| panic!("unpacking busybox rootfs into {}: {e}", rootfs.display()));
    rootfs
}

/// The uncompressed layer tar: directories, config files, busybox and one symlink per applet.
pub fn busybox_layer() -> Vec<u8> {
    let binary = std::fs::read(HOST_BUSYBOX).unwrap_or_else(|e| {
        panic!("reading {HOST_BUSYBOX} (install Debian's busybox-static): {e}")
    });
    let mut layer = LayerBuilder::new();
    for dir in [
        "bin", "sbin", "etc", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys",
    ] {
        layer.dir(dir, 0o755);
    }
    layer
        .dir("root", 0o700)
        .dir("tmp", 0o1777)
        .dir("home", 0o755)
        .file("etc/passwd", 0o644, PASSWD.as_bytes())
        .file("etc/group", 0o644, GROUP.as_bytes())
        .file("bin/busybox", 0o755, &binary);
    for applet in applets() {
        layer.symlink(&format!("bin/{applet}"), "/bin/busybox");
    }
    layer.owner(1000, 1000).dir("home/app", 0o755);
    layer.into_tar()
}

/// Applet names from `busybox --list`, sorted so the layer is reproducible.
fn applets() -> Vec<String> {
    let output = crate::run(Command::new(HOST_BUSYBOX).arg("--list"));
    let mut applets: Vec<String> = String::from_utf8_lossy(&output)
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "busybox")
        .map(str::to_owned)
        .collect();
    applets.sort();
    applets.dedup();
    applets
}
