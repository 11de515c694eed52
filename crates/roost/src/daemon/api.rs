//! What the API listener serves: roost-api's router with the MCP server
//! (Streamable HTTP at `/mcp`) and the tokenizer's public key mounted
//! beside the Machines API, all behind the API token.

use axum::Router;
use roost_machines::Machines;
use roost_tokens::Authority;
use std::sync::Arc;

/// The API listener's router over `machines`. `mcp` says which `Host` and
/// `Origin` headers `/mcp` accepts and ends its streams at shutdown;
/// `seal_key` is the tokenizer's public key; `tokens` are what requests
/// must present.
pub(super) fn router(
    machines: Machines,
    tokens: Arc<Authority>,
    mcp: &roost_mcp::HttpOptions,
    seal_key: String,
) -> Router {
    let mounted = Router::new()
        .route_service("/mcp", roost_mcp::http_service(machines.clone(), mcp))
        .merge(roost_api::tokenizer_routes(seal_key));
    roost_api::router(machines, tokens, mounted)
}
