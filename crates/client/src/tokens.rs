//! API tokens: create, list, revoke.

use crate::{Client, Result};
use roost_types::{CreatedToken, ListTokensResponse, TokenCaveats};

impl Client {
    /// A new token derived from this client's, narrowed by `caveats`.
    pub async fn create_token(&self, caveats: &TokenCaveats) -> Result<CreatedToken> {
        self.post("/v1/tokens", caveats).await
    }

    pub async fn list_tokens(&self) -> Result<ListTokensResponse> {
        self.get("/v1/tokens").await
    }

    /// Revokes token `id` and every token derived from it.
    pub async fn revoke_token(&self, id: &str) -> Result<serde_json::Value> {
        self.delete(&format!("/v1/tokens/{id}")).await
    }
}
