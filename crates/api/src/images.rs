//! roost extension: the local image store (`/v1/images`).

use crate::error::ApiError;
use crate::extract::Body;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

pub(crate) async fn list(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.machines.list_images()?))
}

/// `POST /v1/images {"path": "/abs/path", "name": "repo:tag"}` imports an
/// OCI layout directory, oci-archive or docker-save tarball from a path on
/// the roost host (the CLI resolves relative paths before sending).
#[derive(Deserialize)]
pub(crate) struct ImportRequest {
    path: String,
    name: String,
}

pub(crate) async fn import(
    State(s): State<AppState>,
    Body(req): Body<ImportRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let path = std::path::PathBuf::from(&req.path);
    if !path.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "path {:?} must be absolute (a path on the roost host)",
            req.path
        )));
    }
    let machines = s.machines.clone();
    let image = tokio::task::spawn_blocking(move || machines.import_image(&path, &req.name))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("import task failed: {e}"),
            )
        })??;
    Ok((StatusCode::CREATED, Json(image)))
}
