//! Storage tools: S3 buckets owned by apps.

use super::reply::{count, reply_on, text, Subject};
use super::Tools;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateStorageArgs {
    /// App that will own the bucket (see list_apps / create_app).
    app: String,
    /// Bucket name, unique on this host: 3-63 lowercase letters, digits, '-' and '.', starting
    /// and ending with a letter or digit. Default: "<app>-bucket".
    name: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListStorageArgs {
    /// Only this app's buckets. Default: every bucket on the host.
    app: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DestroyStorageArgs {
    /// App that owns the bucket.
    app: String,
    /// Bucket name, as returned by create_storage or list_storage.
    name: String,
}

#[tool_router(router = storage_router, vis = "pub(super)")]
impl Tools {
    /// Create an S3 bucket owned by an app, and the app's S3 key pair if it has none yet (one
    /// pair per app, reaching only that app's buckets). Machines of the app get the variables
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3, AWS_REGION and BUCKET_NAME
    /// (the app's oldest bucket) when they are next created or updated, so S3 clients and
    /// SDKs inside them work without configuration. Returns {"name", "app", "created_at",
    /// "endpoint", "region", "access_key_id", "secret_access_key"}; list_storage does not
    /// repeat the key pair.
    #[tool]
    async fn create_storage(
        &self,
        Parameters(args): Parameters<CreateStorageArgs>,
    ) -> CallToolResult {
        let result = self
            .machines
            .create_storage(&args.app, args.name.as_deref())
            .await;
        reply_on(Subject::Bucket, result, |v| {
            format!("created bucket {} for app {}", v.name, args.app)
        })
    }

    /// List S3 buckets, all or one app's, with the endpoint and region to reach them. Returns
    /// {"buckets": [{"name", "app", "created_at", "endpoint", "region"}]}.
    #[tool(annotations(read_only_hint = true))]
    async fn list_storage(&self, Parameters(args): Parameters<ListStorageArgs>) -> CallToolResult {
        let result = self
            .machines
            .list_storage(args.app.as_deref())
            .await
            .map(|buckets| json!({ "buckets": buckets }));
        reply_on(Subject::Bucket, result, |v| {
            format!("{} buckets", count(&v["buckets"]))
        })
    }

    /// Delete one of an app's S3 buckets together with every object in it, for good. With the
    /// app's last bucket its key pair goes too. Returns {"name", "destroyed": true}.
    #[tool(annotations(destructive_hint = true))]
    async fn destroy_storage(
        &self,
        Parameters(args): Parameters<DestroyStorageArgs>,
    ) -> CallToolResult {
        let result = self
            .machines
            .destroy_storage(&args.app, &args.name)
            .await
            .map(|()| json!({"name": args.name, "destroyed": true}));
        reply_on(Subject::Bucket, result, |v| {
            format!("destroyed bucket {}", text(&v["name"]))
        })
    }
}
