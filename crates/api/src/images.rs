//! roost extension: the local image store (`/v1/images`).

use crate::auth::AsCaller;
use crate::error::ApiError;
use crate::extract::Body;
use axum::extract::Path;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use roost_types::RegistryAuth;
use serde::Deserialize;

pub(crate) async fn list(AsCaller(s): AsCaller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.list_images()?))
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
    AsCaller(s): AsCaller,
    Body(req): Body<ImportRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let path = std::path::PathBuf::from(&req.path);
    if !path.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "path {:?} must be absolute (a path on the roost host)",
            req.path
        )));
    }
    let machines = s.clone();
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

/// `POST /v1/images/pull {"image": REF, "auth": {"username", "password"}?}` pulls
/// an image from its registry into the store (201 with the image). With
/// `Accept: application/x-ndjson` the answer is a 200 stream of JSON lines
/// instead: `{"progress": {layer, status, downloaded, size}}` as layers
/// advance, then `{"image": {...}}` or `{"error": "...", "status": 4xx/5xx}`.
#[derive(Deserialize)]
pub(crate) struct PullRequest {
    image: String,
    #[serde(default)]
    auth: Option<RegistryAuth>,
}

pub(crate) async fn pull(
    AsCaller(s): AsCaller,
    headers: HeaderMap,
    Body(req): Body<PullRequest>,
) -> Result<Response, ApiError> {
    let streamed = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(NDJSON));
    if !streamed {
        let image = s.pull_image(&req.image, req.auth, |_| {}).await?;
        return Ok((StatusCode::CREATED, Json(image)).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let progress_tx = tx.clone();
    tokio::spawn(async move {
        let result = s
            .pull_image(&req.image, req.auth, move |progress| {
                let _ = progress_tx.send(json_line(&serde_json::json!({ "progress": progress })));
            })
            .await;
        let last = match result {
            Ok(image) => serde_json::json!({ "image": image }),
            Err(err) => {
                let err = ApiError::from(err);
                serde_json::json!({ "error": err.message, "status": err.status.as_u16() })
            }
        };
        let _ = tx.send(json_line(&last));
    });
    let lines = line_stream(rx);
    Ok((
        [(CONTENT_TYPE, NDJSON)],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

const NDJSON: &str = "application/x-ndjson";

fn json_line(value: &serde_json::Value) -> String {
    format!("{value}\n")
}

fn line_stream(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> impl futures_util::Stream<Item = Result<String, std::convert::Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|line| line.map(Ok)))
}

/// `DELETE /v1/images/{reference}` removes an image record (409 while a
/// machine uses it); `POST /v1/images/prune` then frees unreferenced layers.
pub(crate) async fn remove(
    AsCaller(s): AsCaller,
    Path(reference): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.remove_image(&reference)?))
}

pub(crate) async fn prune(AsCaller(s): AsCaller) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.prune_images().await?))
}
