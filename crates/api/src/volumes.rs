//! Handlers of the Fly Machines API v1 volume endpoints.

use crate::error::ApiError;
use crate::extract::Body;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use roost_types::{CreateVolumeRequest, ExtendVolumeRequest, UpdateVolumeRequest};

type Result<T> = std::result::Result<T, ApiError>;

pub(crate) async fn list(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.machines.list_volumes(&app)?))
}

pub(crate) async fn create(
    State(s): State<AppState>,
    Path(app): Path<String>,
    Body(req): Body<CreateVolumeRequest>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.machines.create_volume(&app, req).await?))
}

pub(crate) async fn get(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.machines.get_volume(&app, &id)?))
}

pub(crate) async fn update(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    Body(req): Body<UpdateVolumeRequest>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.machines.update_volume(&app, &id, req).await?))
}

pub(crate) async fn destroy(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.machines.destroy_volume(&app, &id).await?))
}

pub(crate) async fn extend(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    Body(req): Body<ExtendVolumeRequest>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.machines.extend_volume(&app, &id, req).await?))
}

pub(crate) async fn list_snapshots(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.machines.list_volume_snapshots(&app, &id)?))
}

/// Fly documents an empty 200; roost returns the snapshot it took, which
/// clients that expect nothing ignore.
pub(crate) async fn create_snapshot(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.machines.create_volume_snapshot(&app, &id).await?))
}
