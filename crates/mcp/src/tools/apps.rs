//! App tools: list and create apps.

use super::reply::{count, reply, text};
use super::Tools;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use roost_types::CreateAppRequest;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateAppArgs {
    /// New app's name: 1-63 lowercase letters, digits and '-', not starting or ending with '-'.
    name: String,
}

#[tool_router(router = apps_router, vis = "pub(super)")]
impl Tools {
    /// List all apps with their number of machines. Use it to find the app name other tools
    /// need. Returns {"apps": [{"name", "machine_count"}]}.
    #[tool(annotations(read_only_hint = true))]
    async fn list_apps(&self) -> CallToolResult {
        let result = self.machines.list_apps(None).map(|list| {
            json!({"apps": list.apps.iter().map(|a| json!({"name": a.name, "machine_count": a.machine_count})).collect::<Vec<_>>()})
        });
        reply(result, |v| format!("{} apps", count(&v["apps"])))
    }

    /// Create an app: a named group of machines. Needed once before run_machine. Fails if the
    /// name is taken. Returns {"name", "organization"}.
    #[tool]
    async fn create_app(&self, Parameters(args): Parameters<CreateAppArgs>) -> CallToolResult {
        let result = self
            .machines
            .create_app(CreateAppRequest {
                app_name: args.name,
                org_slug: None,
                network: None,
            })
            .map(|app| json!({"name": app.name, "organization": app.organization.slug}));
        reply(result, |v| format!("created app {}", text(&v["name"])))
    }
}
