//! Extractors whose rejections are JSON errors a robot can act on.

use crate::error::ApiError;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// A JSON body, whatever `Content-Type` the client sent (plain `curl -d`
/// says `application/x-www-form-urlencoded`): the body must parse as JSON,
/// and one that does not is answered with 400 `{"error": ...}`, as
/// `Json<T>` would.
pub(crate) struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(unreadable_body)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

/// A body that may be absent (Fly's stop takes an optional body).
pub(crate) struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(unreadable_body)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Most bytes of a request body the API reads (axum's default limit, set
/// by [`crate::router`] so that the message is true).
pub(crate) const BODY_LIMIT_BYTES: usize = 2 * 1024 * 1024;

/// A body that could not be read: 413 when it is too large (with the
/// limit), the rejection's own status otherwise, as JSON either way.
fn unreadable_body(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            format!("the request body is too large: at most {BODY_LIMIT_BYTES} bytes are accepted"),
        );
    }
    ApiError::new(
        status,
        format!("could not read the request body: {}", rejection.body_text()),
    )
}

fn json_error(rejection: JsonRejection) -> ApiError {
    ApiError::bad_request(format!("invalid JSON body: {}", rejection.body_text()))
}

/// `Query<T>` that answers bad query strings with 400 `{"error": ...}`.
pub(crate) struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(query_error(rejection)),
        }
    }
}

fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(format!(
        "invalid query parameters: {}",
        rejection.body_text()
    ))
}

/// The lease nonce a caller presented, if any.
pub(crate) struct LeaseNonce(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for LeaseNonce {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(LeaseNonce(
            parts
                .headers
                .get(crate::LEASE_NONCE_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ))
    }
}
