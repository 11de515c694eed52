use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Rejects any request without `Authorization: Bearer <token>`.
pub(crate) async fn require_token(
    State(token): State<Arc<String>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_of);
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the API token is not valid for this roost").into_response(),
        None => ApiError::unauthorized(
            "missing API token: send `Authorization: Bearer <token>` (the admin token is in DATA_DIR/admin-token)",
        )
        .into_response(),
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
