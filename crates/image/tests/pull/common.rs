//! A store, a puller that trusts the test registries over plain HTTP, and images to push.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use roost_image::{
    Image, ImageError, LayerStatus, PullOptions, PullProgress, Puller, RegistryConfig,
};
use roost_testkit::layer::LayerBuilder;
use roost_testkit::oci::{self, ImageSpec};
use roost_testkit::registry::Registry;
use serde_json::json;

/// The image-store tests' fixture (a store in a temporary directory), shared as is.
#[allow(dead_code)] // the store tests use more of it than these do
#[path = "../store/common.rs"]
mod store;

pub use store::Fixture;

impl Fixture {
    /// A registry of this fixture; dropped (killed) with the returned value.
    pub fn registry(&self) -> Registry {
        Registry::start(self.dir.path())
    }

    /// A puller for which every registry in `insecure` speaks plain HTTP.
    pub fn puller(&self, insecure: &[&Registry]) -> Puller {
        Puller::new(RegistryConfig {
            insecure: insecure.iter().map(|r| r.addr.clone()).collect(),
            ..RegistryConfig::default()
        })
        .expect("puller")
    }

    /// Pulls `reference` and returns the image and each layer's statuses, in order.
    pub fn pull(&self, puller: &Puller, reference: &str) -> (Result<Image, ImageError>, Statuses) {
        let seen = Mutex::new(HashMap::<String, Vec<LayerStatus>>::new());
        let record = |p: &PullProgress| {
            let mut seen = seen.lock().expect("progress lock");
            let statuses = seen.entry(p.layer.clone()).or_default();
            if statuses.last() != Some(&p.status) {
                statuses.push(p.status);
            }
        };
        let options = PullOptions {
            progress: Some(&record),
            ..PullOptions::default()
        };
        let result = puller.pull(&self.store, reference, &options);
        (result, seen.into_inner().expect("progress lock"))
    }

    /// A fresh OCI layout directory path inside the fixture.
    pub fn layout_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Per-layer progress statuses of one pull.
pub type Statuses = HashMap<String, Vec<LayerStatus>>;

/// Writes a layout of the given uncompressed layers, tagged `latest`.
pub fn write_layout(path: &std::path::Path, config: serde_json::Value, layers: Vec<Vec<u8>>) {
    let spec = ImageSpec {
        config,
        layers,
        gzip: true,
        docker: false,
    };
    let manifest = oci::write_image(path, &spec);
    oci::write_index(path, vec![manifest.tagged("latest")]);
}

/// A two-layer image: the second deletes `/etc/motd` (whiteout) and replaces `/srv`'s content
/// (opaque directory).
pub fn whiteout_layers() -> Vec<Vec<u8>> {
    let mut lower = LayerBuilder::new();
    lower
        .dir("etc", 0o755)
        .file("etc/motd", 0o644, b"hello\n")
        .dir("srv", 0o755)
        .file("srv/old", 0o644, b"old\n");
    let mut upper = LayerBuilder::new();
    upper
        .raw(tar::EntryType::Regular, b"etc/.wh.motd", b"", b"")
        .dir("srv", 0o755)
        .raw(tar::EntryType::Regular, b"srv/.wh..wh..opq", b"", b"")
        .file("srv/new", 0o644, b"new\n");
    vec![lower.into_tar(), upper.into_tar()]
}

pub fn cmd_config(cmd: &str) -> serde_json::Value {
    json!({ "Cmd": [cmd], "User": "1000:1000", "ExposedPorts": { "8080/tcp": {} } })
}

/// `len` bytes that do not compress (xorshift), so downloads of them take real time.
pub fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}
