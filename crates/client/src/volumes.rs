//! Volume endpoints.

use crate::{Client, Result};
use reqwest::Method;
use roost_types::{
    CreateVolumeRequest, ExtendVolumeRequest, ExtendVolumeResponse, Volume, VolumeSnapshot,
};

impl Client {
    /// Creates a volume; with `snapshot_id` it restores, with
    /// `source_volume_id` it forks.
    pub async fn create_volume(&self, app: &str, req: &CreateVolumeRequest) -> Result<Volume> {
        self.post(&format!("/v1/apps/{app}/volumes"), req).await
    }

    pub async fn list_volumes(&self, app: &str) -> Result<Vec<Volume>> {
        self.get(&format!("/v1/apps/{app}/volumes")).await
    }

    pub async fn get_volume(&self, app: &str, id: &str) -> Result<Volume> {
        self.get(&format!("/v1/apps/{app}/volumes/{id}")).await
    }

    pub async fn extend_volume(
        &self,
        app: &str,
        id: &str,
        size_gb: u64,
    ) -> Result<ExtendVolumeResponse> {
        self.call(
            Method::PUT,
            &format!("/v1/apps/{app}/volumes/{id}/extend"),
            Some(&ExtendVolumeRequest { size_gb }),
        )
        .await
    }

    pub async fn destroy_volume(&self, app: &str, id: &str) -> Result<Volume> {
        self.delete(&format!("/v1/apps/{app}/volumes/{id}")).await
    }

    pub async fn list_volume_snapshots(&self, app: &str, id: &str) -> Result<Vec<VolumeSnapshot>> {
        self.get(&format!("/v1/apps/{app}/volumes/{id}/snapshots"))
            .await
    }

    pub async fn create_volume_snapshot(&self, app: &str, id: &str) -> Result<VolumeSnapshot> {
        self.post(&format!("/v1/apps/{app}/volumes/{id}/snapshots"), &())
            .await
    }
}
