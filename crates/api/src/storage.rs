//! Object storage endpoints (a roost extension; Fly provisions Tigris
//! through `fly storage`): buckets owned by an app, and the app's key pair.

use crate::auth::AsCaller;
use crate::error::ApiError;
use crate::extract::Body;
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

type Result<T> = std::result::Result<T, ApiError>;

/// `POST /v1/apps/{app}/storage` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateStorage {
    /// Bucket name; defaults to `<app>-bucket`.
    #[serde(default)]
    name: Option<String>,
}

pub(crate) async fn list(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.list_storage(Some(&app)).await?))
}

pub(crate) async fn list_all(AsCaller(s): AsCaller) -> Result<impl IntoResponse> {
    Ok(Json(s.list_storage(None).await?))
}

pub(crate) async fn create(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
    Body(req): Body<CreateStorage>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.create_storage(&app, req.name.as_deref()).await?))
}

pub(crate) async fn destroy(
    AsCaller(s): AsCaller,
    Path((app, name)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    s.destroy_storage(&app, &name).await?;
    Ok(Json(serde_json::json!({"ok": true})))
}
