use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use roost_machines::MachineError;
use roost_types::ErrorResponse;

/// An error response: a status and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
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
            MachineError::NotFound(_) => StatusCode::NOT_FOUND,
            MachineError::Conflict(_) | MachineError::LeaseMismatch(_) => StatusCode::CONFLICT,
            MachineError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            MachineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            MachineError::Upstream(_) => StatusCode::BAD_GATEWAY,
        };
        if status.is_server_error() {
            tracing::error!(error = %err, "request failed");
        }
        ApiError::new(status, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorResponse {
                error: self.message,
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
