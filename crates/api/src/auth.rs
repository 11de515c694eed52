//! Who a request comes from: the token check every route is behind, and
//! the [`Caller`] it leaves in the request for the handlers.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use roost_machines::{Caller, Scope, Service};
use roost_tokens::{Authority, Holder};
use std::sync::Arc;
use std::time::SystemTime;

/// Rejects any request without a token of this roost in
/// `Authorization: Bearer <token>`; a request with one goes on carrying
/// the token's [`Caller`] (its rights and its scope) and its [`Holder`]
/// (extensions), which handlers and the routes mounted beside the API's
/// (`/mcp`) act for. Why a token is refused is said; the token never is.
pub(crate) async fn require_token(
    State(tokens): State<Arc<Authority>>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_of);
    let Some(presented) = presented else {
        return ApiError::unauthorized(
            "missing API token: send `Authorization: Bearer <token>` (the admin token is in DATA_DIR/admin-token)",
        )
        .into_response();
    };
    let now = SystemTime::now();
    match tokens.authenticate(presented) {
        Ok(holder) if holder.token.expired(now) => {
            ApiError::unauthorized("the API token has expired").into_response()
        }
        Ok(holder) => {
            let rights = holder.token.rights();
            let scope: Arc<dyn Scope> = holder.token.clone();
            let caller = Caller::scoped(holder.who.clone(), rights, scope);
            request.extensions_mut().insert(caller);
            request.extensions_mut().insert(holder);
            next.run(request).await
        }
        Err(err) => {
            ApiError::unauthorized(format!("the API token is not valid for this roost: {err}"))
                .into_response()
        }
    }
}

/// The caller of a request and the token it presented: what the token
/// routes act on.
pub(crate) struct Presented {
    pub caller: Caller,
    pub holder: Holder,
}

impl FromRequestParts<AppState> for Presented {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        match (
            parts.extensions.get::<Caller>(),
            parts.extensions.get::<Holder>(),
        ) {
            (Some(caller), Some(holder)) => Ok(Presented {
                caller: caller.clone(),
                holder: holder.clone(),
            }),
            _ => Err(unchecked()),
        }
    }
}

fn unchecked() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the request reached its handler without passing the token check",
    )
}

/// The service acting for the request's caller, the one [`require_token`]
/// found: what every handler calls.
pub(crate) struct AsCaller(pub Service);

impl FromRequestParts<AppState> for AsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = parts.extensions.get::<Caller>().ok_or_else(unchecked)?;
        Ok(AsCaller(state.machines.as_caller(caller)))
    }
}

/// The token of an `Authorization` value: `Bearer <token>` or Fly's
/// `FlyV1 <token>`, the scheme in any case (RFC 9110 makes it
/// case-insensitive), separated by one or more spaces.
fn token_of(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let known = ["Bearer", "FlyV1"]
        .iter()
        .any(|known| scheme.eq_ignore_ascii_case(known));
    known.then(|| token.trim())
}

#[cfg(test)]
mod tests {
    #[test]
    fn security_the_scheme_is_case_insensitive() {
        for value in [
            "Bearer t0k",
            "bearer t0k",
            "BEARER  t0k",
            "flyv1 t0k",
            "FlyV1 t0k",
        ] {
            assert_eq!(super::token_of(value), Some("t0k"), "{value}");
        }
        for value in ["Basic t0k", "Bearert0k", "t0k", ""] {
            assert_eq!(super::token_of(value), None, "{value}");
        }
    }
}
