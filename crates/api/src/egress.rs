//! Egress endpoints (a roost extension): an app's policy of where its
//! machines may connect through the egress proxy, and the audit log of
//! the proxy's decisions.

use crate::auth::AsCaller;
use crate::error::ApiError;
use crate::extract::Body;
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::Json;
use roost_types::EgressPolicy;

type Result<T> = std::result::Result<T, ApiError>;

pub(crate) async fn get(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.egress_policy(&app)?))
}

/// Replaces the whole policy; answers it normalized.
pub(crate) async fn put(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
    Body(policy): Body<EgressPolicy>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.set_egress_policy(&app, policy)?))
}

pub(crate) async fn log(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.egress_log(&app)?))
}
