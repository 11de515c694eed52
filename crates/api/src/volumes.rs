//! Handlers of the Fly Machines API v1 volume endpoints.

use crate::auth::AsCaller;
use crate::error::ApiError;
use crate::extract::Body;
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::Json;
use roost_types::{CreateVolumeRequest, ExtendVolumeRequest, UpdateVolumeRequest};

type Result<T> = std::result::Result<T, ApiError>;

pub(crate) async fn list(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.list_volumes(&app)?))
}

pub(crate) async fn create(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
    Body(req): Body<CreateVolumeRequest>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.create_volume(&app, req).await?))
}

pub(crate) async fn get(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.get_volume(&app, &id)?))
}

pub(crate) async fn update(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    Body(req): Body<UpdateVolumeRequest>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.update_volume(&app, &id, req).await?))
}

pub(crate) async fn destroy(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.destroy_volume(&app, &id).await?))
}

pub(crate) async fn extend(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    Body(req): Body<ExtendVolumeRequest>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.extend_volume(&app, &id, req).await?))
}

pub(crate) async fn list_snapshots(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.list_volume_snapshots(&app, &id)?))
}

/// Fly documents an empty 200; roost returns the snapshot it took, which
/// clients that expect nothing ignore.
pub(crate) async fn create_snapshot(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.create_volume_snapshot(&app, &id).await?))
}
