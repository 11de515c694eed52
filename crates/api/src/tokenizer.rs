//! `GET /v1/tokenizer/public-key`: the key clients seal secrets to. The
//! tokenizer runs on its own listener; only its public key is served here.

use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// Routes about the tokenizer; mount them with [`crate::router`], which puts
/// them behind the API token. `seal_key` is the public key as 64 hex
/// characters.
pub fn tokenizer_routes(seal_key: String) -> Router {
    let body = Arc::new(serde_json::json!({ "public_key": seal_key }));
    Router::new().route(
        "/v1/tokenizer/public-key",
        get(move || {
            let body = body.clone();
            async move { axum::Json((*body).clone()) }
        }),
    )
}
