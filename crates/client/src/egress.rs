//! App egress policies and their audit logs.

use crate::{Client, Result};
use reqwest::Method;
use roost_types::{EgressLog, EgressPolicy};

impl Client {
    pub async fn egress_policy(&self, app: &str) -> Result<EgressPolicy> {
        self.get(&format!("/v1/apps/{app}/egress")).await
    }

    /// Replaces the app's policy; answers it as roost stored it.
    pub async fn set_egress_policy(
        &self,
        app: &str,
        policy: &EgressPolicy,
    ) -> Result<EgressPolicy> {
        self.call(Method::PUT, &format!("/v1/apps/{app}/egress"), Some(policy))
            .await
    }

    pub async fn egress_log(&self, app: &str) -> Result<EgressLog> {
        self.get(&format!("/v1/apps/{app}/egress/log")).await
    }
}
