//! The JSON documents of an image: OCI and Docker schema 2 manifests, image indexes and
//! manifest lists, and the image config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::ImageError;
use crate::ImageConfig;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// JSON documents (manifests, indexes, configs) are small; anything larger is refused rather
/// than read into memory.
pub(crate) const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing)]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
}

impl Descriptor {
    /// The digest, validated before it is used as a file name.
    pub(crate) fn digest(&self, what: &str) -> Result<Digest, ImageError> {
        Digest::parse(&self.digest).map_err(|reason| ImageError::malformed(what, reason))
    }
}

/// What a manifest-shaped document turned out to be.
pub(crate) enum Document {
    /// An OCI image index or Docker manifest list.
    Index(Vec<Descriptor>),
    /// An image manifest: config and layers, lowest first.
    Image(ImageManifest),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: String,
    manifests: Option<Vec<Descriptor>>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
}

/// Classifies a manifest or index by its `mediaType`, or by its shape when the field is absent
/// (it is optional in OCI documents).
pub(crate) fn parse_document(bytes: &[u8], what: &str) -> Result<Document, ImageError> {
    let raw: RawDocument =
        serde_json::from_slice(bytes).map_err(|e| ImageError::malformed(what, e))?;
    if raw.schema_version != Some(2) {
        return Err(ImageError::malformed(
            what,
            format!(
                "schemaVersion is {:?}; only schema 2 (OCI, Docker v2) is supported, \
                 Docker schema 1 images must be converted first",
                raw.schema_version
            ),
        ));
    }
    let is_index = matches!(raw.media_type.as_str(), OCI_INDEX | DOCKER_MANIFEST_LIST)
        || (raw.media_type.is_empty() && raw.manifests.is_some());
    let is_image = matches!(raw.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST)
        || (raw.media_type.is_empty() && raw.config.is_some());
    match (is_index, is_image, raw.manifests, raw.config, raw.layers) {
        (true, _, Some(manifests), _, _) => Ok(Document::Index(manifests)),
        (_, true, _, Some(config), Some(layers)) => Ok(Document::Image(ImageManifest {
            schema_version: 2,
            media_type: raw.media_type,
            config,
            layers,
        })),
        _ => Err(ImageError::malformed(
            what,
            format!(
                "media type '{}' is not an image manifest or index with the required fields; \
                 supported: {OCI_MANIFEST}, {DOCKER_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST_LIST}",
                raw.media_type
            ),
        )),
    }
}

/// Picks one entry of an index: the only one; else those tagged `tag`; then among those the
/// linux/amd64 one (the only platform roost runs).
pub(crate) fn choose<'a>(
    entries: &'a [Descriptor],
    tag: &str,
    what: &str,
) -> Result<&'a Descriptor, ImageError> {
    let mut candidates: Vec<&Descriptor> = entries.iter().collect();
    if candidates.len() > 1 {
        let tagged: Vec<&Descriptor> = entries
            .iter()
            .filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
            .collect();
        if !tagged.is_empty() {
            candidates = tagged;
        }
    }
    if candidates.len() > 1 {
        candidates.retain(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        });
    }
    match candidates.first() {
        Some(chosen) if candidates.len() == 1 || chosen.platform.is_some() => Ok(chosen),
        _ => Err(ImageError::malformed(
            what,
            format!(
                "cannot choose one of its {} entries (available: {}); roost needs a linux/amd64 \
                 image, or an entry tagged '{tag}'",
                entries.len(),
                describe_entries(entries)
            ),
        )),
    }
}

fn describe_entries(entries: &[Descriptor]) -> String {
    let described: Vec<String> = entries
        .iter()
        .map(|d| match (&d.platform, d.annotations.get(REF_NAME)) {
            (Some(p), _) => format!("{}/{}", p.os, p.architecture),
            (None, Some(name)) => format!("tag '{name}'"),
            (None, None) => d.digest.clone(),
        })
        .collect();
    if described.is_empty() {
        "none".to_owned()
    } else {
        described.join(", ")
    }
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    config: Option<RawRuntimeConfig>,
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// The runtime part of an image config. Producers write `null` for absent lists, hence the
/// options everywhere.
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRuntimeConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    labels: Option<BTreeMap<String, String>>,
}

/// The parts of an image config the store needs.
pub(crate) struct ParsedConfig {
    pub config: ImageConfig,
    /// Digests of the uncompressed layers, lowest first.
    pub diff_ids: Vec<Digest>,
}

pub(crate) fn parse_config(bytes: &[u8], what: &str) -> Result<ParsedConfig, ImageError> {
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|e| ImageError::malformed(what, e))?;
    let rootfs = raw.rootfs.ok_or_else(|| {
        ImageError::malformed(
            what,
            "it has no rootfs.diff_ids, which every image config needs",
        )
    })?;
    let diff_ids = rootfs
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d).map_err(|reason| ImageError::malformed(what, reason)))
        .collect::<Result<_, _>>()?;
    let runtime = raw.config.unwrap_or_default();
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let config = ImageConfig {
        entrypoint: runtime.entrypoint.unwrap_or_default(),
        cmd: runtime.cmd.unwrap_or_default(),
        env: runtime.env.unwrap_or_default(),
        working_dir: non_empty(runtime.working_dir),
        user: non_empty(runtime.user),
        exposed_ports: runtime
            .exposed_ports
            .unwrap_or_default()
            .into_keys()
            .collect(),
        labels: runtime.labels.unwrap_or_default(),
    };
    Ok(ParsedConfig { config, diff_ids })
}
