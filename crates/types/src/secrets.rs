//! App secrets, in the shapes of Fly's `/v1/apps/{app}/secrets` endpoints.
//! Values go in, never out: listings carry names and digests only.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One app secret as listed: no value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSecret {
    pub name: String,
    /// Keyed digest of the value: changes when the value does, reveals nothing.
    pub digest: String,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /v1/apps/{app}/secrets` and the answer of an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSecrets {
    pub secrets: Vec<AppSecret>,
}

/// `POST /v1/apps/{app}/secrets`: set each name to its value; `null` unsets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateSecretsRequest {
    pub values: BTreeMap<String, Option<String>>,
}

/// `POST /v1/apps/{app}/secrets/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetSecretRequest {
    pub value: String,
}
