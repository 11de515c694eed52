//! roost's HTTP API: the Fly Machines API v1 (same paths under `/v1`, same
//! JSON shapes and status codes) plus a few documented roost extensions
//! (`/v1/images`: import, registry pull, remove, prune; machine logs; the
//! `registry_auth` field of machine create/update; app egress policies
//! and their audit logs; API tokens at `/v1/tokens`).
//!
//! Handlers only translate HTTP to [`roost_machines::Machines`] calls and
//! back; no lifecycle logic lives here.

mod auth;
mod egress;
mod error;
mod extract;
mod images;
mod logs;
mod machines;
mod secrets;
mod storage;
mod tokenizer;
mod tokens;
mod volumes;

pub use error::ApiError;
pub use tokenizer::tokenizer_routes;

use axum::routing::{delete, get, post, put};
use axum::Router;
use roost_machines::Machines;
use roost_tokens::Authority;
use std::sync::Arc;

/// Header in which a lease holder proves it holds the machine's lease.
pub const LEASE_NONCE_HEADER: &str = "fly-machine-lease-nonce";

#[derive(Clone)]
pub(crate) struct AppState {
    pub machines: Machines,
    pub tokens: Arc<Authority>,
}

/// The API router, with `mounted` beside the API's own routes: the binary
/// mounts there what it serves on the API listener besides the Machines API
/// (the MCP server at `/mcp`, the tokenizer's key). Every route, `mounted`'s
/// included, requires `Authorization: Bearer <token>`, so one check guards
/// them all (a token of `tokens`, not revoked); paths nothing serves
/// answer the API's JSON 404.
pub fn router(machines: Machines, tokens: Arc<Authority>, mounted: Router) -> Router {
    let state = AppState {
        machines,
        tokens: Arc::clone(&tokens),
    };
    let m = "/v1/apps/{app}/machines/{id}";
    Router::new()
        .route(
            "/v1/apps",
            get(machines::list_apps).post(machines::create_app),
        )
        .route(
            "/v1/apps/{app}",
            get(machines::get_app).delete(machines::delete_app),
        )
        .route(
            "/v1/apps/{app}/machines",
            get(machines::list_machines).post(machines::create_machine),
        )
        .route(
            m,
            // flaude, a Fly client, updates with PUT; Fly's spec says POST.
            get(machines::get_machine)
                .post(machines::update_machine)
                .put(machines::update_machine)
                .delete(machines::destroy_machine),
        )
        .route(&format!("{m}/start"), post(machines::start))
        .route(&format!("{m}/stop"), post(machines::stop))
        .route(&format!("{m}/restart"), post(machines::restart))
        .route(&format!("{m}/signal"), post(machines::signal))
        .route(&format!("{m}/wait"), get(machines::wait))
        .route(&format!("{m}/events"), get(machines::events))
        .route(&format!("{m}/versions"), get(machines::versions))
        .route(
            &format!("{m}/lease"),
            get(machines::get_lease)
                .post(machines::acquire_lease)
                .delete(machines::release_lease),
        )
        .route(&format!("{m}/metadata"), get(machines::get_metadata))
        .route(
            &format!("{m}/metadata/{{key}}"),
            post(machines::set_metadata).delete(machines::delete_metadata),
        )
        .route(&format!("{m}/cordon"), post(machines::cordon))
        .route(&format!("{m}/uncordon"), post(machines::uncordon))
        .route(&format!("{m}/ps"), get(machines::ps))
        .route(&format!("{m}/exec"), post(machines::exec))
        .route(&format!("{m}/logs"), get(logs::logs))
        .route(
            "/v1/apps/{app}/volumes",
            get(volumes::list).post(volumes::create),
        )
        .route(
            "/v1/apps/{app}/volumes/{id}",
            get(volumes::get)
                .post(volumes::update)
                .delete(volumes::destroy),
        )
        .route("/v1/apps/{app}/volumes/{id}/extend", put(volumes::extend))
        .route(
            "/v1/apps/{app}/volumes/{id}/snapshots",
            get(volumes::list_snapshots).post(volumes::create_snapshot),
        )
        .route("/v1/storage", get(storage::list_all))
        .route(
            "/v1/apps/{app}/storage",
            get(storage::list).post(storage::create),
        )
        .route("/v1/apps/{app}/storage/{name}", delete(storage::destroy))
        .route(
            "/v1/apps/{app}/secrets",
            get(secrets::list).post(secrets::update),
        )
        .route(
            "/v1/apps/{app}/secrets/{name}",
            post(secrets::set).delete(secrets::unset),
        )
        .route("/v1/apps/{app}/egress", get(egress::get).put(egress::put))
        .route("/v1/apps/{app}/egress/log", get(egress::log))
        .route("/v1/images", get(images::list).post(images::import))
        .route("/v1/images/pull", post(images::pull))
        .route("/v1/images/prune", post(images::prune))
        .route("/v1/images/{*reference}", delete(images::remove))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{id}", delete(tokens::revoke))
        .fallback(error::not_found)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(
            extract::BODY_LIMIT_BYTES,
        ))
        .merge(mounted)
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            auth::require_token,
        ))
}
