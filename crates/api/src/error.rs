use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use roost_machines::MachineError;
use roost_types::{ErrorResponse, Missing};

/// An error response: a status and `{"error": "..."}`, with `missing` when
/// the request named something that is not there.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub missing: Option<Missing>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            missing: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl From<MachineError> for ApiError {
    fn from(err: MachineError) -> ApiError {
        let status = match &err {
            MachineError::Invalid(_) => StatusCode::BAD_REQUEST,
            MachineError::Forbidden(_) => StatusCode::FORBIDDEN,
            MachineError::NotFound(_) => StatusCode::NOT_FOUND,
            MachineError::Missing(missing) if missing.is_path_resource() => StatusCode::NOT_FOUND,
            MachineError::Missing(_) => StatusCode::BAD_REQUEST,
            MachineError::Conflict(_) | MachineError::LeaseMismatch(_) => StatusCode::CONFLICT,
            MachineError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            MachineError::Internal(_)
            | MachineError::PrivateNetwork(_)
            | MachineError::NetnsDirTaken(_) => StatusCode::INTERNAL_SERVER_ERROR,
            MachineError::Upstream(_) => StatusCode::BAD_GATEWAY,
        };
        if status.is_server_error() {
            tracing::error!(error = %err, "request failed");
        }
        let message = err.to_string();
        ApiError {
            status,
            message,
            missing: match err {
                MachineError::Missing(missing) => Some(missing),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorResponse {
                error: self.message,
                missing: self.missing,
            }),
        )
            .into_response()
    }
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {uri}; the Machines API lives under /v1/apps"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_machines::{Caller, Right, Rights, Target, Who};

    #[test]
    fn a_refused_call_is_a_403_naming_the_right() {
        let refused = Caller::new(Who::Admin, Rights::NONE)
            .may(Right::Volumes, Target::App("web"))
            .unwrap_err();
        let err = ApiError::from(MachineError::Forbidden(refused));
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert_eq!(
            err.message,
            "not allowed: the admin token lacks the 'volumes' right on app 'web'"
        );
        assert!(err.missing.is_none());
    }
}
