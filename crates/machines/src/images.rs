//! Image operations of the service layer: import, list, pull, remove, prune, and finding a
//! machine config's image, pulling it first when the config names a registry and the store
//! lacks it.

use std::collections::HashSet;

use roost_image::{Credentials, Image, ImageError, PruneReport, PullOptions, PullProgress};
use roost_types::{MachineState, RegistryAuth};

use crate::{Inner, MachineError, Missing, Result, Service};
use roost_lifecycle::{Right, Target};

impl Service {
    /// Imports an image (see [`roost_image::ImageStore::import`]).
    pub fn import_image(&self, source: &std::path::Path, name: &str) -> Result<Image> {
        let inner = self.authorize(Right::Images, Target::Host)?;
        Ok(inner.images.import(source, name)?)
    }

    pub fn list_images(&self) -> Result<Vec<Image>> {
        let inner = self.authorize(Right::Read, Target::Host)?;
        Ok(inner.images.list()?)
    }

    /// Pulls `reference` from its registry into the store, re-resolving a tag even if an
    /// image of that name is there (layers already stored are not fetched again).
    /// `progress` is called from the pulling threads as layers advance.
    pub async fn pull_image(
        &self,
        reference: &str,
        auth: Option<RegistryAuth>,
        progress: impl Fn(&PullProgress) + Send + Sync + 'static,
    ) -> Result<Image> {
        self.authorize(Right::Images, Target::Host)?
            .pull(reference, auth, progress)
            .await
    }

    /// Removes an image record. Refused while a machine that is not destroyed runs on the
    /// image, since its next create or update could not find it.
    pub fn remove_image(&self, reference: &str) -> Result<Image> {
        let inner = self.authorize(Right::Images, Target::Host)?;
        let image = inner.images.get(reference)?;
        let users: Vec<String> = inner
            .store
            .list_machines(None)?
            .into_iter()
            .filter(|r| r.state != MachineState::Destroyed)
            .filter(|r| r.image_ref.digest == image.digest)
            .map(|r| format!("{} (app {})", r.id, r.app))
            .collect();
        if !users.is_empty() {
            return Err(MachineError::Conflict(format!(
                "image '{}' is used by machine(s) {}; destroy them (or update them to another image) first",
                image.reference,
                users.join(", ")
            )));
        }
        Ok(inner.images.remove(&image.reference)?)
    }

    /// Deletes blobs and layers no image record references, keeping every layer a machine
    /// that is not destroyed is built on (its image record may have been removed or its tag
    /// pulled anew since).
    pub async fn prune_images(&self) -> Result<PruneReport> {
        let inner = self.authorize(Right::Images, Target::Host)?;
        let mut keep = HashSet::new();
        for record in inner.store.list_machines(None)? {
            if record.state == MachineState::Destroyed {
                continue;
            }
            for layer in inner.host.machine_layers(&record.id)? {
                if let Some(hex) = layer.file_name().and_then(|n| n.to_str()) {
                    keep.insert(format!("sha256:{hex}"));
                }
            }
        }
        let images = inner.images.clone();
        tokio::task::spawn_blocking(move || images.prune(&keep))
            .await
            .map_err(|e| MachineError::Internal(format!("prune task failed: {e}")))?
            .map_err(Into::into)
    }
}

impl Inner {
    /// The image a machine config names. One missing from the store is the
    /// caller's mistake (400), answered with the images there are.
    pub(crate) fn config_image(&self, reference: &str) -> Result<Image> {
        self.images.get(reference).map_err(|err| match err {
            ImageError::NotFound { .. } => MachineError::Missing(Missing::Image {
                reference: reference.to_string(),
                available: self
                    .images
                    .list()
                    .map(|images| images.into_iter().map(|image| image.reference).collect())
                    .unwrap_or_default(),
            }),
            other => other.into(),
        })
    }

    /// The image a machine config names. One not in the store is pulled when the reference
    /// names a registry (`host[:port]/repo...`); other names must be imported or pulled first,
    /// so a typo never reaches out to Docker Hub.
    pub(crate) async fn image_for_config(
        &self,
        reference: &str,
        auth: Option<RegistryAuth>,
    ) -> Result<Image> {
        match self.images.get(reference) {
            Err(ImageError::NotFound { .. }) if roost_image::names_registry(reference) => {
                tracing::info!(image = reference, "image not in the store; pulling it");
                self.pull(reference, auth, |_| {}).await
            }
            _ => self.config_image(reference),
        }
    }

    async fn pull(
        &self,
        reference: &str,
        auth: Option<RegistryAuth>,
        progress: impl Fn(&PullProgress) + Send + Sync + 'static,
    ) -> Result<Image> {
        let images = self.images.clone();
        let puller = self.puller.clone();
        let reference = reference.to_owned();
        let credentials = auth.map(|auth| Credentials {
            username: auth.username,
            password: auth.password,
        });
        tokio::task::spawn_blocking(move || {
            let options = PullOptions {
                credentials,
                progress: Some(&progress),
            };
            puller.pull(&images, &reference, &options)
        })
        .await
        .map_err(|e| MachineError::Internal(format!("pull task failed: {e}")))?
        .map_err(Into::into)
    }
}
