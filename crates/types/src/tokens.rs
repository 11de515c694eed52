//! API tokens (a roost extension, `/v1/tokens`): the caveats a token is
//! created with, as the API takes and lists them. A token itself appears
//! only once, in the answer that creates it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a token is limited to; each field that is set narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCaveats {
    /// The apps it reaches, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// The apps it reaches: those whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_prefix: Option<String>,
    /// The machines (ids) it reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machines: Option<Vec<String>>,
    /// The rights it carries, by name (`read`, `lifecycle`, `exec`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rights: Option<Vec<String>>,
    /// When it stops allowing anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /v1/tokens`' answer: the new token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    pub id: String,
    pub token: String,
}

/// A token roost issued, as `GET /v1/tokens` lists it: never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub caveats: TokenCaveats,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/tokens`' answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListTokensResponse {
    pub tokens: Vec<TokenInfo>,
}
