//! Test fixtures shared by roost's test suites and benchmarks.
//!
//! roost never pulls from a public registry in tests, so every image a test runs is built here:
//! from the host's statically linked busybox, or (for the one test that runs apt through the
//! egress proxy) a Debian tree debootstrap builds from Debian's package registry. The OCI layout
//! writers live here too, so that image-store tests and fixture images use one implementation
//! of "write a blob under its digest".
//!
//! Everything here panics on failure: it is test scaffolding, and a panic with the failing step
//! in its message is the most useful thing a broken fixture can do.

mod busybox;
pub mod debian;
pub mod layer;
pub mod nginx;
pub mod oci;
pub mod registry;
pub mod upstream;

pub use busybox::{busybox_layer, busybox_layout, busybox_rootfs, host_busybox};

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// Waits up to 5 s for a server (`what`, for the panic message) to accept
/// TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr, what: &str) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} never accepted connections on {addr}");
}

/// Runs `command` and returns its stdout; panics with its stderr if it cannot start or fails.
/// For the third-party tools tests rely on (skopeo, umoci, busybox), whose absence must fail a
/// test rather than skip it.
pub fn run(command: &mut Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?} (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
