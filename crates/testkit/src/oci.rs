//! Writing OCI image layouts (image-layout spec v1.0): `oci-layout`, `index.json` and
//! content-addressed blobs under `blobs/sha256/`.

use std::fs;
use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A content descriptor as written into manifests and indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    pub fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }

    /// The descriptor with an `org.opencontainers.image.ref.name` annotation, as tools write
    /// tagged entries of `index.json`.
    pub fn tagged(&self, tag: &str) -> Value {
        let mut value = self.to_json();
        value["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        value
    }

    /// The descriptor with a `platform` object, as entries of a multi-platform index carry.
    pub fn for_platform(&self, os: &str, architecture: &str) -> Value {
        let mut value = self.to_json();
        value["platform"] = json!({ "os": os, "architecture": architecture });
        value
    }

    /// The hex part of the digest, which is also the blob's file name.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// What goes into an image written by [`write_image`].
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    /// The runtime `config` object of the image config (`Cmd`, `Env`, `User`, ...).
    pub config: Value,
    /// Uncompressed layer tars, lowest first.
    pub layers: Vec<Vec<u8>>,
    /// Store layers gzip-compressed.
    pub gzip: bool,
    /// Use Docker schema 2 media types instead of OCI ones.
    pub docker: bool,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Gzip-compresses `bytes` with a zero mtime in the gzip header, so output is reproducible.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .unwrap_or_else(|e| panic!("gzip: {e}"))
}

/// Creates `oci-layout` and `blobs/sha256/` under `layout`.
pub fn init_layout(layout: &Path) {
    fs::create_dir_all(layout.join("blobs/sha256"))
        .unwrap_or_else(|e| panic!("creating {}: {e}", layout.display()));
    write(
        &layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
}

/// Stores `bytes` as a blob of the layout and returns its descriptor.
pub fn write_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Descriptor {
    let descriptor = Descriptor {
        media_type: media_type.to_owned(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
    };
    write(&blob_path(layout, &descriptor), bytes);
    descriptor
}

/// Moves the file at `path` (on the layout's file system) into the layout as a blob, hashing
/// it as it is read rather than holding it in memory, and returns its descriptor.
pub fn move_blob(layout: &Path, media_type: &str, path: &Path) -> Descriptor {
    let failed = |e: std::io::Error| -> ! { panic!("storing {} as a blob: {e}", path.display()) };
    let mut file = fs::File::open(path).unwrap_or_else(|e| failed(e));
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).unwrap_or_else(|e| failed(e));
    let descriptor = Descriptor {
        media_type: media_type.to_owned(),
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        size,
    };
    fs::rename(path, blob_path(layout, &descriptor)).unwrap_or_else(|e| failed(e));
    descriptor
}

/// Where the blob of `descriptor` lives in `layout`.
pub fn blob_path(layout: &Path, descriptor: &Descriptor) -> std::path::PathBuf {
    layout.join("blobs/sha256").join(descriptor.hex())
}

/// Writes the layers, the image config (linux/amd64, with `rootfs.diff_ids` computed from the
/// uncompressed layers; see [`image_config`]) and the image manifest as blobs, and returns the
/// manifest descriptor.
/// `index.json` is left alone: see [`write_index`].
pub fn write_image(layout: &Path, spec: &ImageSpec) -> Descriptor {
    init_layout(layout);
    let (manifest_type, config_type, layer_type) = match (spec.docker, spec.gzip) {
        (true, _) => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
        (false, true) => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP),
        (false, false) => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_TAR),
    };
    let layers: Vec<Descriptor> = spec
        .layers
        .iter()
        .map(|tar| {
            let blob = if spec.gzip { gzip(tar) } else { tar.clone() };
            write_blob(layout, layer_type, &blob)
        })
        .collect();
    let diff_ids: Vec<String> = spec.layers.iter().map(|tar| sha256_digest(tar)).collect();
    let config = write_blob(layout, config_type, &image_config(&spec.config, &diff_ids));
    write_manifest(layout, manifest_type, &config, &layers)
}

/// Writes an image manifest of type `media_type` over blobs already in the layout, and returns
/// its descriptor. For images [`write_image`] cannot express (mismatched diff_ids, lying media
/// types).
pub fn write_manifest(
    layout: &Path,
    media_type: &str,
    config: &Descriptor,
    layers: &[Descriptor],
) -> Descriptor {
    let layers: Vec<Value> = layers.iter().map(Descriptor::to_json).collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.to_json(),
        "layers": layers,
    });
    write_blob(layout, media_type, &to_bytes(&manifest))
}

/// The bytes of a linux/amd64 image config with runtime config `config` and the given
/// `rootfs.diff_ids`.
pub fn image_config(config: &Value, diff_ids: &[String]) -> Vec<u8> {
    to_bytes(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
}

/// Writes an image index blob listing `manifests` (descriptor JSON values) and returns its
/// descriptor.
pub fn write_nested_index(layout: &Path, manifests: Vec<Value>) -> Descriptor {
    write_blob(layout, OCI_INDEX, &index_bytes(manifests))
}

/// Writes `index.json`, the layout's entry point, listing `manifests` (descriptor JSON values).
pub fn write_index(layout: &Path, manifests: Vec<Value>) {
    write(&layout.join("index.json"), &index_bytes(manifests));
}

fn index_bytes(manifests: Vec<Value>) -> Vec<u8> {
    to_bytes(&json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }))
}

fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| panic!("serializing JSON: {e}"))
}

fn write(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
