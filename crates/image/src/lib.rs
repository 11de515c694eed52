//! roost's content-addressed image store.
//!
//! Creating a machine needs its image's layers on disk as directories overlayfs can stack;
//! starting one needs nothing from here. So all the work happens once, at import (or pull)
//! time, and every machine of an image shares the same unpacked layers.
//!
//! # On-disk layout
//! ```text
//! <root>/blobs/sha256/<hex>     verified content: layer blobs, configs, manifests
//! <root>/layers/sha256/<hex>/   one unpacked layer per layer blob digest, an overlayfs lowerdir
//! <root>/images/<name>.json     one record (an `Image` as JSON) per reference, `/` and `:` %-escaped
//! <root>/tmp/                   work in progress; cleared by `ImageStore::open`
//! ```
//! Everything reaches its final path by rename from `tmp/`: blobs after their digest is
//! verified, layers after they are completely unpacked and flushed, records after fsync. A
//! crash leaves at worst junk in `tmp/`, never a torn blob, layer or record. Verified blobs of
//! an import that fails later (say, on its third layer) stay as cache for the next attempt;
//! content that failed verification is never kept.
//!
//! # Ingestion
//! [`ImageStore::ingest_blob`] stores and verifies one blob; [`ImageStore::register`] takes a
//! manifest and its config, unpacks the layers and writes the record. [`ImageStore::import`]
//! is those two calls over a local file; [`Puller::pull`] is the same over HTTP from an OCI
//! distribution registry (anonymous, HTTP basic or bearer tokens; HTTPS with the system roots
//! plus an optional CA file, plain HTTP for registries configured as insecure), downloading
//! several layers at once and each shared layer once however many pulls want it.
//!
//! [`ImageStore::remove`] drops a record only; [`ImageStore::prune`] then deletes the blobs
//! and layers no record (and no caller-named layer, e.g. of a running machine) references.
//!
//! docker-save archives have no manifest, so the store synthesizes one: an OCI image manifest
//! with the saved config and the saved layer tars as uncompressed OCI layers (their digests
//! are the config's diff_ids), serialized as compact JSON with fields in the order
//! `schemaVersion, mediaType, config, layers` and descriptors as `mediaType, digest, size`.
//! The image digest is the sha256 of those bytes, so the same archive always gets the same
//! digest.
//!
//! # Layer safety
//! Layers are untrusted. Entries with absolute paths or `..`, entries under a symlink,
//! hardlinks to anything but an earlier regular file of the same layer, and sparse files
//! claiming more than 4 GiB make the import fail with [`ImageError::UnsafeLayerEntry`]; no
//! symlink is followed while unpacking. Zero blocks are written as holes, so a layer of
//! well-compressed zeros costs no disk. Device nodes and fifos are skipped (the runtime
//! provides `/dev`). Layers may be gzip, zstd or uncompressed. Whiteouts are converted to overlayfs
//! form, which needs root (`mknod`, `trusted.*` xattrs), as does keeping ownership.
//!
//! Mode bits are kept as the image has them, setuid and setgid included: images rely on them
//! (`su`, `ping`, `sudo`), and the runtime runs every machine with `no_new_privileges`, under
//! which the kernel ignores setuid bits on exec, so they grant nothing inside a machine.

mod auth;
mod digest;
mod error;
mod import;
mod manifest;
mod pull;
mod reference;
mod registry;
mod store;
mod unpack;
mod user;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use auth::Credentials;
pub use error::ImageError;
pub use pull::{LayerStatus, PullOptions, PullProgress, Puller, RegistryConfig};
pub use reference::names_registry;
pub use store::{ImageStore, PruneReport};

/// An image in the store, as its record holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Image {
    /// Normalized `repo:tag`.
    pub reference: String,
    /// Manifest digest, `sha256:<hex>`.
    pub digest: String,
    pub config: ImageConfig,
    /// Layer blob digests, lowest first.
    pub layers: Vec<String>,
    /// Sum of the layer blobs' sizes, compressed as stored.
    pub size: u64,
    /// When the image was imported, RFC 3339.
    pub created_at: String,
}

/// The parts of an image config a machine runs with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `port/proto` keys of the config's `ExposedPorts`, e.g. `80/tcp`.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
}
