//! API tokens (a roost extension): create a token narrower than the
//! caller's own, list what was issued, revoke a token and what was
//! derived from it. Each needs the `tokens` right: on the host, or, to
//! create a token for one app, on that app.

use crate::auth::Presented;
use crate::error::ApiError;
use crate::extract::Body;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use roost_machines::{MachineError, Right, Target};
use roost_tokens::TokenError;
use roost_types::{CreatedToken, ListTokensResponse, TokenCaveats};

type Result<T> = std::result::Result<T, ApiError>;

/// `POST /v1/tokens`: a token derived from the caller's, so it holds at
/// most the caller's rights on at most the caller's apps, whatever the
/// body asks.
pub(crate) async fn create(
    State(state): State<AppState>,
    presented: Presented,
    Body(caveats): Body<TokenCaveats>,
) -> Result<impl IntoResponse> {
    let target = match caveats.apps.as_deref() {
        Some([app]) => Target::App(app),
        _ => Target::Host,
    };
    presented.may_manage_tokens(target)?;
    let minted = state
        .tokens
        .issue(&presented.holder.token, &caveats)
        .map_err(token_error)?;
    tracing::info!(caller = %presented.caller.who(), id = %minted.id, "token issued");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: minted.id.to_string(),
            token: minted.token,
        }),
    ))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    presented: Presented,
) -> Result<impl IntoResponse> {
    presented.may_manage_tokens(Target::Host)?;
    Ok(Json(ListTokensResponse {
        tokens: state.tokens.list(),
    }))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    presented: Presented,
    Path(id): Path<String>,
) -> Result<impl IntoResponse> {
    presented.may_manage_tokens(Target::Host)?;
    state.tokens.revoke(&id).map_err(token_error)?;
    tracing::info!(caller = %presented.caller.who(), %id, "token revoked");
    Ok(Json(serde_json::json!({"ok": true})))
}

impl Presented {
    fn may_manage_tokens(&self, target: Target<'_>) -> Result<()> {
        self.caller
            .may(Right::Tokens, target)
            .map_err(|refused| {
                tracing::info!(caller = %self.caller.who(), right = %Right::Tokens, %target, "call refused");
                ApiError::from(MachineError::Forbidden(refused))
            })
    }
}

/// A token operation's failure as HTTP: caveats that cannot be made are
/// the request's fault, an unknown id is not there, the record is ours.
fn token_error(err: TokenError) -> ApiError {
    let status = match &err {
        TokenError::Invalid(_) => StatusCode::BAD_REQUEST,
        TokenError::NotIssued(_) => StatusCode::NOT_FOUND,
        TokenError::Record(_) => {
            tracing::error!(error = %err, "token record failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        TokenError::Malformed(_)
        | TokenError::Forged
        | TokenError::UnknownRoot { .. }
        | TokenError::Revoked(_) => StatusCode::UNAUTHORIZED,
    };
    ApiError::new(status, err.to_string())
}
