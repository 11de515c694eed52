//! App secrets and the tokenizer's public key.

use crate::{Client, ClientError, Result};
use roost_types::{AppSecrets, UpdateSecretsRequest};
use std::collections::BTreeMap;

impl Client {
    pub async fn list_secrets(&self, app: &str) -> Result<AppSecrets> {
        self.get(&format!("/v1/apps/{app}/secrets")).await
    }

    /// Sets each name to its value; `None` unsets it.
    pub async fn update_secrets(
        &self,
        app: &str,
        values: BTreeMap<String, Option<String>>,
    ) -> Result<AppSecrets> {
        self.post(
            &format!("/v1/apps/{app}/secrets"),
            &UpdateSecretsRequest { values },
        )
        .await
    }

    /// The tokenizer's seal key, 64 hex characters.
    pub async fn tokenizer_public_key(&self) -> Result<String> {
        let body: serde_json::Value = self.get("/v1/tokenizer/public-key").await?;
        body["public_key"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| ClientError::Decode(format!("no public_key in {body}")))
    }
}
