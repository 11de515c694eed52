//! Who a request comes from: the token check every route is behind, and
//! the [`Caller`] it leaves in the request for the handlers.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use roost_machines::{Caller, Service};
use std::sync::Arc;

/// Rejects any request without `Authorization: Bearer <token>`; a request
/// with the token goes on carrying the token's [`Caller`] (an extension),
/// which handlers and the routes mounted beside the API's (`/mcp`) act
/// for.
pub(crate) async fn require_token(
    State(token): State<Arc<String>>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_of);
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => {
            request.extensions_mut().insert(Caller::admin());
            next.run(request).await
        }
        Some(_) => ApiError::unauthorized("the API token is not valid for this roost").into_response(),
        None => ApiError::unauthorized(
            "missing API token: send `Authorization: Bearer <token>` (the admin token is in DATA_DIR/admin-token)",
        )
        .into_response(),
    }
}

/// The service acting for the request's caller, the one [`require_token`]
/// found: what every handler calls.
pub(crate) struct AsCaller(pub Service);

impl FromRequestParts<AppState> for AsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = parts.extensions.get::<Caller>().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request reached its handler without passing the token check",
            )
        })?;
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

/// Compares secrets without leaking, through timing, how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

    #[test]
    fn constant_time_eq_compares() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
