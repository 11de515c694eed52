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

/// The host's busybox binary, if it is one an image can use: present and
/// statically linked. Debian's dynamically linked `busybox` package installs
/// the same path, and an image holding that binary fails at its first
/// command inside a machine (there is no libc in the image), so it is
/// refused here with what to install instead.
pub fn host_busybox() -> Result<Vec<u8>, String> {
    const INSTALL: &str = "install Debian's busybox-static: apt-get install -y busybox-static";
    let binary = std::fs::read(HOST_BUSYBOX)
        .map_err(|e| format!("reading {HOST_BUSYBOX}: {e}; {INSTALL}"))?;
    match asks_for_interpreter(&binary) {
        Some(false) => Ok(binary),
        Some(true) => Err(format!("{HOST_BUSYBOX} is dynamically linked; {INSTALL}")),
        None => Err(format!(
            "{HOST_BUSYBOX} is not a 64-bit ELF program; {INSTALL}"
        )),
    }
}

/// Whether a 64-bit little-endian ELF file names a program interpreter
/// (`PT_INTERP`), i.e. is dynamically linked; `None` if it is no such file.
fn asks_for_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let read = |at: usize, len: usize| -> Option<u64> {
        let bytes = elf.get(at..at + len)?;
        Some(bytes.iter().rev().fold(0, |n, b| n << 8 | u64::from(*b)))
    };
    let table = usize::try_from(read(0x20, 8)?).ok()?;
    let (entry, count) = (read(0x36, 2)? as usize, read(0x38, 2)? as usize);
    (0..count)
        .map(|i| read(table + i * entry, 4).map(|kind| kind == u64::from(PT_INTERP)))
        .try_fold(false, |found, kind| Some(found || kind?))
}

/// The uncompressed layer tar: directories, config files, busybox and one symlink per applet.
pub fn busybox_layer() -> Vec<u8> {
    let binary = host_busybox().unwrap_or_else(|e| panic!("{e}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_program_is_told_from_a_static_one() {
        // The test binary itself is dynamically linked.
        let this = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
        assert_eq!(asks_for_interpreter(&this), Some(true));
        assert_eq!(asks_for_interpreter(b"#!/bin/sh\n"), None);
        assert_eq!(asks_for_interpreter(b"\x7fELF\x02\x01"), None);
        if let Ok(busybox) = host_busybox() {
            assert_eq!(asks_for_interpreter(&busybox), Some(false));
        }
    }
}
