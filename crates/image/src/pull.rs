//! Pulling images from OCI distribution registries into the store.
//!
//! A pull resolves the reference to one image manifest (an index or manifest list yields its
//! linux/amd64 entry), fetches the config, then downloads and unpacks the layers the store
//! lacks, several at once, each through the same `ingest_blob` + unpack path an import takes.
//! Every layer runs in a single flight keyed by its digest, so concurrent pulls sharing a
//! layer download and unpack it once. The record is written last, so an interrupted pull
//! leaves verified blobs and layers (reused by the next pull) and never a usable half-image.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::blocking::Client;
use serde::{Deserialize, Serialize};

use crate::auth::Credentials;
use crate::digest::Digest;
use crate::error::ImageError;
use crate::manifest::{self, Descriptor, Document};
use crate::reference::{self, Remote, Target};
use crate::registry::{error_chain, Session};
use crate::{Image, ImageStore};

/// Layers downloaded and unpacked at once: enough to overlap network and disk, few enough
/// not to starve the machines on a small host.
const PARALLEL_LAYERS: usize = 4;
/// Index → index → manifest is the deepest real images go.
const MAX_INDEX_DEPTH: usize = 4;
/// Progress is reported at most once per this many downloaded bytes of a layer.
const PROGRESS_STEP: u64 = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Host-wide registry settings, as `DATA_DIR/registries.json` holds them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`, as written in references) spoken to over plain HTTP. Every
    /// other registry is HTTPS only.
    pub insecure: Vec<String>,
    /// PEM file of CA certificates trusted in addition to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Credentials per registry `host[:port]`.
    pub credentials: BTreeMap<String, Credentials>,
}

/// Per-pull settings.
#[derive(Default)]
pub struct PullOptions<'a> {
    /// Credentials for this pull, used instead of the host's for the image's registry.
    pub credentials: Option<Credentials>,
    /// Called as layers progress; from several threads when layers download in parallel.
    pub progress: Option<&'a (dyn Fn(&PullProgress) + Sync)>,
}

/// Where one layer of a pull is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullProgress {
    /// Layer blob digest.
    pub layer: String,
    pub status: LayerStatus,
    /// Bytes of the layer blob downloaded so far.
    pub downloaded: u64,
    /// Size of the layer blob.
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerStatus {
    Downloading,
    Unpacking,
    /// Downloaded and unpacked by this pull.
    Done,
    /// Already in the store; nothing was fetched.
    Cached,
}

/// Pulls images from registries. Build one per host configuration and share it: it holds the
/// HTTP client (connection pools, trusted roots).
#[derive(Debug)]
pub struct Puller {
    config: RegistryConfig,
    certificates: Vec<reqwest::Certificate>,
    /// Built at the first pull: reqwest's blocking client must not be created on an async
    /// runtime's thread, and a `Puller` usually is.
    http: Mutex<Option<Client>>,
}

impl Puller {
    /// Checks the configuration (the CA file must hold PEM certificates) without contacting
    /// any registry.
    pub fn new(config: RegistryConfig) -> Result<Puller, ImageError> {
        let certificates = match &config.ca_file {
            Some(path) => {
                let pem = fs::read(path).map_err(|e| {
                    ImageError::io(format!("reading registry CA file {}", path.display()), e)
                })?;
                let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    ImageError::malformed(
                        format!("registry CA file {}", path.display()),
                        error_chain(&e),
                    )
                })?;
                if certificates.is_empty() {
                    return Err(ImageError::malformed(
                        format!("registry CA file {}", path.display()),
                        "it holds no PEM certificate",
                    ));
                }
                certificates
            }
            None => Vec::new(),
        };
        Ok(Puller {
            config,
            certificates,
            http: Mutex::new(None),
        })
    }

    /// Pulls `reference` (`host[:port]/repo[:tag]`, `host[:port]/repo@sha256:...`; without a
    /// host, Docker Hub) into `store` and records it under that reference. Layers the store
    /// has are not fetched again. Blocks; run it off async runtimes' threads.
    pub fn pull(
        &self,
        store: &ImageStore,
        reference: &str,
        options: &PullOptions<'_>,
    ) -> Result<Image, ImageError> {
        let remote = reference::remote(reference)?;
        let http = self.client()?;
        let insecure = self.config.insecure.iter().any(|r| r == &remote.registry);
        let credentials = options
            .credentials
            .as_ref()
            .or_else(|| self.config.credentials.get(&remote.registry));
        let session = Session::new(&http, &remote, insecure, credentials);
        let _adding = store.adding();
        let (manifest, image) = resolve(&session, &remote)?;
        let config_digest = image.config.digest("config descriptor")?;
        let config = session.small_blob(&config_digest)?;
        verify(
            &config,
            &config_digest,
            Some(image.config.size),
            "image config",
        )?;
        let diff_ids = manifest::parse_config(&config, "image config")?.diff_ids;
        if diff_ids.len() != image.layers.len() {
            return Err(ImageError::malformed(
                "image config",
                format!(
                    "it lists {} diff_ids but the manifest has {} layers",
                    diff_ids.len(),
                    image.layers.len()
                ),
            ));
        }
        let layers: Vec<Layer> = image
            .layers
            .iter()
            .zip(diff_ids)
            .enumerate()
            .map(|(i, (descriptor, diff_id))| {
                Ok(Layer {
                    digest: descriptor.digest("layer descriptor")?,
                    size: descriptor.size,
                    diff_id,
                    name: format!(
                        "{} ({} of {})",
                        descriptor.digest,
                        i + 1,
                        image.layers.len()
                    ),
                })
            })
            .collect::<Result<_, ImageError>>()?;
        fetch_layers(store, &session, &layers, options.progress)?;
        store.register_as(&remote.record, &manifest, &config)
    }

    fn client(&self) -> Result<Client, ImageError> {
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = http.as_ref() {
            return Ok(client.clone());
        }
        let mut builder = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(None)
            .user_agent(concat!("roost/", env!("CARGO_PKG_VERSION")));
        for certificate in &self.certificates {
            builder = builder.add_root_certificate(certificate.clone());
        }
        let client = builder.build().map_err(|e| {
            ImageError::io(
                "creating the registry HTTP client",
                io::Error::other(error_chain(&e)),
            )
        })?;
        *http = Some(client.clone());
        Ok(client)
    }
}

/// Fetches the manifest `remote` names and follows indexes down to the linux/amd64 image
/// manifest; returns its bytes, verified, and its parsed form.
fn resolve(
    session: &Session<'_>,
    remote: &Remote,
) -> Result<(Vec<u8>, manifest::ImageManifest), ImageError> {
    let (mut bytes, tag) = match &remote.target {
        Target::Tag(tag) => (session.manifest(tag)?, tag.as_str()),
        Target::Digest(digest) => {
            let bytes = session.manifest(&digest.to_string())?;
            verify(&bytes, digest, None, &format!("manifest {digest}"))?;
            (bytes, "")
        }
    };
    for _ in 0..MAX_INDEX_DEPTH {
        match manifest::parse_document(&bytes, "manifest")? {
            Document::Image(image) => return Ok((bytes, image)),
            Document::Index(entries) => {
                let chosen: &Descriptor = manifest::choose(&entries, tag, "image index")?;
                let digest = chosen.digest("index entry")?;
                let what = format!("manifest {digest}");
                bytes = session.manifest(&digest.to_string())?;
                verify(&bytes, &digest, Some(chosen.size), &what)?;
            }
        }
    }
    Err(ImageError::malformed(
        "image index",
        format!("indexes are nested more than {MAX_INDEX_DEPTH} deep"),
    ))
}

fn verify(
    bytes: &[u8],
    expected: &Digest,
    size: Option<u64>,
    what: &str,
) -> Result<(), ImageError> {
    if let Some(size) = size.filter(|&size| size != bytes.len() as u64) {
        return Err(ImageError::SizeMismatch {
            digest: expected.to_string(),
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(bytes);
    if &actual != expected {
        return Err(ImageError::DigestMismatch {
            what: what.to_owned(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

struct Layer {
    digest: Digest,
    size: u64,
    diff_id: Digest,
    /// How errors name the layer: digest and position.
    name: String,
}

/// Downloads and unpacks `layers` on up to [`PARALLEL_LAYERS`] threads; the first error stops
/// the layers not yet started and is returned.
fn fetch_layers(
    store: &ImageStore,
    session: &Session<'_>,
    layers: &[Layer],
    progress: Option<&(dyn Fn(&PullProgress) + Sync)>,
) -> Result<(), ImageError> {
    let queue = Mutex::new(layers.iter().collect::<VecDeque<_>>());
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let next = || {
        queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    };
    std::thread::scope(|scope| {
        for _ in 0..layers.len().min(PARALLEL_LAYERS) {
            scope.spawn(|| {
                while let Some(layer) = next() {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Err(err) = fetch_layer(store, session, layer, progress) {
                        failed.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(err);
                        return;
                    }
                }
            });
        }
    });
    match first_error
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn fetch_layer(
    store: &ImageStore,
    session: &Session<'_>,
    layer: &Layer,
    progress: Option<&(dyn Fn(&PullProgress) + Sync)>,
) -> Result<(), ImageError> {
    let report = |status, downloaded| {
        if let Some(progress) = progress {
            progress(&PullProgress {
                layer: layer.digest.to_string(),
                status,
                downloaded,
                size: layer.size,
            });
        }
    };
    store.single_flight(&layer.digest.to_string(), || {
        if store.has_layer(&layer.digest) {
            tracing::debug!(layer = %layer.digest, "layer already in the store");
            report(LayerStatus::Cached, layer.size);
            return Ok(());
        }
        if !store.has_blob(&layer.digest) {
            report(LayerStatus::Downloading, 0);
            let response = session.blob(&layer.digest)?;
            let mut reader = Counting {
                inner: BufReader::with_capacity(1 << 20, response),
                count: 0,
                reported: 0,
                failure: None,
                report: &report,
            };
            let ingested =
                store.ingest_blob(&mut reader, &layer.digest.to_string(), Some(layer.size));
            if let Some(failure) = reader.failure.take() {
                return Err(session.upstream(format!(
                    "the download of layer {} broke off after {} of {} bytes: {failure}; pull \
                     again to retry (layers already complete are kept)",
                    layer.name, reader.count, layer.size
                )));
            }
            ingested?;
        }
        report(LayerStatus::Unpacking, layer.size);
        store.unpack(&layer.digest, &layer.diff_id, &layer.name)?;
        report(LayerStatus::Done, layer.size);
        Ok(())
    })
}

/// Counts a download as it streams, reports progress, and remembers whether a read error
/// came from the network (the registry's fault) rather than the disk.
struct Counting<'a, R> {
    inner: R,
    count: u64,
    reported: u64,
    failure: Option<String>,
    report: &'a dyn Fn(LayerStatus, u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|err| {
            self.failure = Some(error_chain(err));
        })?;
        self.count += n as u64;
        if self.count - self.reported >= PROGRESS_STEP {
            self.reported = self.count;
            (self.report)(LayerStatus::Downloading, self.count);
        }
        Ok(n)
    }
}
