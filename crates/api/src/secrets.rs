//! App secrets, at Fly's paths: `/v1/apps/{app}/secrets`. Values go in
//! only; every answer lists names and digests.

use crate::auth::AsCaller;
use crate::error::ApiError;
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::Json;
use roost_types::{SetSecretRequest, UpdateSecretsRequest};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

type Result<T> = std::result::Result<T, ApiError>;

pub(crate) async fn list(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.list_secrets(&app)?))
}

/// Sets and (with `null`) unsets several secrets at once.
pub(crate) async fn update(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse> {
    let req: UpdateSecretsRequest = parse(&body, r#"{"values": {"NAME": "value" or null}}"#)?;
    let values = req
        .values
        .into_iter()
        .map(|(name, value)| (name, value.map(Zeroizing::new)))
        .collect();
    Ok(Json(s.update_secrets(&app, values)?))
}

pub(crate) async fn set(
    AsCaller(s): AsCaller,
    Path((app, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse> {
    let req: SetSecretRequest = parse(&body, r#"{"value": "..."}"#)?;
    let values = BTreeMap::from([(name, Some(Zeroizing::new(req.value)))]);
    Ok(Json(s.update_secrets(&app, values)?))
}

pub(crate) async fn unset(
    AsCaller(s): AsCaller,
    Path((app, name)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(
        s.update_secrets(&app, BTreeMap::from([(name, None)]))?,
    ))
}

/// Parses a body holding secret values. serde's messages quote the
/// offending value, which here may be a secret, so only the position is
/// reported.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid body at line {}, column {}: expected {shape}",
            e.line(),
            e.column()
        ))
    })
}
