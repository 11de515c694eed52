//! Handlers of the Fly Machines API v1 app and machine endpoints.

use crate::auth::AsCaller;
use crate::error::ApiError;
use crate::extract::{Body, LeaseNonce, OptionalBody, Params};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use roost_machines::ListFilter;
use roost_types::{
    CreateAppRequest, CreateLeaseRequest, CreateMachineRequest, ExecRequest, LeaseResponse,
    MachineState, SignalRequest, StopRequest, UpdateMachineRequest,
};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

type Result<T> = std::result::Result<T, ApiError>;

fn ok() -> Json<serde_json::Value> {
    Json(json!({"ok": true}))
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "{name}={other:?} is invalid: use true or false"
        ))),
    }
}

#[derive(Deserialize)]
pub(crate) struct AppsQuery {
    org_slug: Option<String>,
}

pub(crate) async fn list_apps(
    AsCaller(s): AsCaller,
    Params(q): Params<AppsQuery>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.list_apps(q.org_slug.as_deref())?))
}

pub(crate) async fn create_app(
    AsCaller(s): AsCaller,
    Body(req): Body<CreateAppRequest>,
) -> Result<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(s.create_app(req)?)))
}

pub(crate) async fn get_app(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.get_app(&app)?))
}

pub(crate) async fn delete_app(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
) -> Result<impl IntoResponse> {
    s.delete_app(&app).await?;
    Ok(StatusCode::ACCEPTED)
}

pub(crate) async fn list_machines(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
    Params(query): Params<HashMap<String, String>>,
) -> Result<impl IntoResponse> {
    let mut filter = ListFilter::default();
    for (key, value) in query {
        match key.as_str() {
            "include_deleted" => filter.include_deleted = parse_bool(&key, &value)?,
            "region" => filter.region = Some(value),
            "state" => {
                let states = value
                    .split(',')
                    .map(|s| s.trim().parse::<MachineState>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| ApiError::bad_request(format!("state filter: {e}")))?;
                filter.state = Some(states);
            }
            other => match other.strip_prefix("metadata.") {
                Some(meta_key) => {
                    filter.metadata.insert(meta_key.to_string(), value);
                }
                None => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {other:?}: allowed are include_deleted, region, state, metadata.KEY"
                    )))
                }
            },
        }
    }
    Ok(Json(s.list_machines(&app, &filter)?))
}

pub(crate) async fn create_machine(
    AsCaller(s): AsCaller,
    Path(app): Path<String>,
    Body(req): Body<CreateMachineRequest>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.create_machine(&app, req).await?))
}

pub(crate) async fn get_machine(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.get_machine(&app, &id)?))
}

pub(crate) async fn update_machine(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    LeaseNonce(nonce): LeaseNonce,
    Body(req): Body<UpdateMachineRequest>,
) -> Result<impl IntoResponse> {
    Ok(Json(
        s.update_machine(&app, &id, req, nonce.as_deref()).await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct DestroyQuery {
    #[serde(default)]
    force: Option<String>,
}

pub(crate) async fn destroy_machine(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    LeaseNonce(nonce): LeaseNonce,
    Params(q): Params<DestroyQuery>,
) -> Result<impl IntoResponse> {
    let force = parse_bool("force", q.force.as_deref().unwrap_or(""))?;
    s.destroy_machine(&app, &id, force, nonce.as_deref())
        .await?;
    Ok(ok())
}

pub(crate) async fn start(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    LeaseNonce(nonce): LeaseNonce,
) -> Result<impl IntoResponse> {
    Ok(Json(s.start_machine(&app, &id, nonce.as_deref()).await?))
}

pub(crate) async fn stop(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    LeaseNonce(nonce): LeaseNonce,
    OptionalBody(req): OptionalBody<StopRequest>,
) -> Result<impl IntoResponse> {
    s.stop_machine(&app, &id, req, nonce.as_deref()).await?;
    Ok(ok())
}

pub(crate) async fn restart(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    LeaseNonce(nonce): LeaseNonce,
    Params(req): Params<StopRequest>,
) -> Result<impl IntoResponse> {
    s.restart_machine(&app, &id, req, nonce.as_deref()).await?;
    Ok(ok())
}

pub(crate) async fn signal(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    LeaseNonce(nonce): LeaseNonce,
    Body(req): Body<SignalRequest>,
) -> Result<impl IntoResponse> {
    s.signal_machine(&app, &id, &req.signal, nonce.as_deref())
        .await?;
    Ok(ok())
}

#[derive(Deserialize)]
pub(crate) struct WaitQuery {
    state: Option<String>,
    timeout: Option<String>,
    instance_id: Option<String>,
}

pub(crate) async fn wait(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    Params(q): Params<WaitQuery>,
) -> Result<impl IntoResponse> {
    let state = q
        .state
        .as_deref()
        .unwrap_or("started")
        .parse::<MachineState>()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let timeout = q
        .timeout
        .as_deref()
        .map(|t| {
            roost_types::parse_duration(t)
                // Whole seconds, rounding a fraction up: "0.5" waits 1 s and
                // "0" stays 0, which the orchestrator refuses.
                .map(|d| d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)))
                .ok_or_else(|| {
                    let range = roost_types::NumberRange::WAIT_TIMEOUT_SECS;
                    ApiError::bad_request(format!(
                        "timeout={t:?} is invalid: use seconds, e.g. timeout=30 (allowed values are {} to {} seconds)",
                        range.min, range.max
                    ))
                })
        })
        .transpose()?;
    s.wait_machine(&app, &id, state, timeout, q.instance_id.as_deref())
        .await?;
    Ok(ok())
}

pub(crate) async fn events(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.events(&app, &id)?))
}

pub(crate) async fn versions(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.versions(&app, &id)?))
}

pub(crate) async fn get_lease(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(LeaseResponse::from(s.get_lease(&app, &id)?)))
}

pub(crate) async fn acquire_lease(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    LeaseNonce(nonce): LeaseNonce,
    OptionalBody(req): OptionalBody<CreateLeaseRequest>,
) -> Result<impl IntoResponse> {
    Ok(Json(LeaseResponse::from(s.acquire_lease(
        &app,
        &id,
        req,
        nonce.as_deref(),
    )?)))
}

pub(crate) async fn release_lease(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    LeaseNonce(nonce): LeaseNonce,
) -> Result<impl IntoResponse> {
    s.release_lease(&app, &id, nonce.as_deref())?;
    Ok(ok())
}

pub(crate) async fn get_metadata(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.get_metadata(&app, &id)?))
}

#[derive(Deserialize)]
pub(crate) struct MetadataValue {
    value: String,
}

pub(crate) async fn set_metadata(
    AsCaller(s): AsCaller,
    Path((app, id, key)): Path<(String, String, String)>,
    LeaseNonce(nonce): LeaseNonce,
    Body(body): Body<MetadataValue>,
) -> Result<impl IntoResponse> {
    s.set_metadata(&app, &id, &key, Some(body.value), nonce.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete_metadata(
    AsCaller(s): AsCaller,
    Path((app, id, key)): Path<(String, String, String)>,
    LeaseNonce(nonce): LeaseNonce,
) -> Result<impl IntoResponse> {
    s.set_metadata(&app, &id, &key, None, nonce.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn cordon(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    LeaseNonce(nonce): LeaseNonce,
) -> Result<impl IntoResponse> {
    s.set_cordoned(&app, &id, true, nonce.as_deref()).await?;
    Ok(ok())
}

pub(crate) async fn uncordon(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    LeaseNonce(nonce): LeaseNonce,
) -> Result<impl IntoResponse> {
    s.set_cordoned(&app, &id, false, nonce.as_deref()).await?;
    Ok(ok())
}

pub(crate) async fn ps(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.processes(&app, &id).await?))
}

pub(crate) async fn exec(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    Body(req): Body<ExecRequest>,
) -> Result<impl IntoResponse> {
    Ok(Json(s.exec(&app, &id, req).await?))
}
