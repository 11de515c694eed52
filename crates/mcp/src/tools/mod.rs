//! The MCP tools: one per platform operation, each a thin translation of
//! its arguments into a [`Machines`] call and of the outcome into a tool
//! result. Descriptions and argument docs are what an LLM reads to decide
//! which tool to call and how, so they state units, defaults and limits.
//!
//! One module per resource, each an `impl Tools` block with its own
//! `#[tool_router]` (named after the module) and its argument types;
//! [`Tools::new`] adds every family's router to the one router served. A
//! new tool goes into the module of the resource it works on; a new
//! resource gets a module here and a line in [`router`]. Results and
//! errors are made in [`reply`], the same way for every tool.

mod apps;
mod egress;
mod exec;
mod files;
mod images;
mod logs;
mod machines;
mod reply;
mod secrets;
mod storage;
mod volumes;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ResultType, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::common::http_header::HEADER_SESSION_ID;
use rmcp::{tool_handler, ErrorData, RoleServer, ServerHandler};
use roost_machines::{Caller, Machines, Right, Rights, Service, Who};
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

/// What the server tells a client about itself at initialization.
const INSTRUCTIONS: &str = "roost runs Linux machines (OCI containers) for you. \
A machine belongs to an app and runs an image from roost's local image store. \
Typical flow: list_images to see what can run; create_app once; run_machine with a \
long-running command such as [\"sleep\", \"infinity\"] so you can exec into it; exec, \
write_file, read_file and list_dir to build it up; stop_machine when idle (its files \
persist and it costs nothing); start_machine to resume in milliseconds. File tools \
also work on stopped machines. Every machine tool needs the app name and the \
machine_id (14 hex characters) returned by run_machine or list_machines. Data that \
must outlive a machine goes on a volume: create_volume, then run_machine with mounts; \
create_volume_snapshot before risky changes. set_secrets gives an app's machines \
environment variables (API keys, passwords) at their next start without showing them \
in any listing. Machines reach the network only through the egress proxy, under their \
app's policy: get_egress shows it, set_egress changes it at once.";

/// The MCP server: the tool router over one [`Machines`] service.
///
/// Each tool call acts for the caller of the HTTP request it came in: the
/// MCP session it belongs to, with the rights of the token that request
/// carried, which the API's token check left in it. So a token's rights
/// apply to every call, also when a session outlives the token. A call
/// whose request carries no caller may do nothing; in `roost up` every
/// request to `/mcp` passed the check.
#[derive(Clone)]
pub struct Tools {
    /// The service, to bind each call's caller to.
    service: Machines,
    /// The service acting for the caller of the call being served.
    machines: Service,
    tool_router: Arc<ToolRouter<Tools>>,
}

/// An app: the argument of tools that list what an app has.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AppArgs {
    /// App name.
    app: String,
}

impl Tools {
    pub fn new(machines: Machines) -> Tools {
        Tools {
            machines: machines.as_caller(&Caller::new(Who::Mcp { session: None }, Rights::NONE)),
            service: machines,
            tool_router: Arc::new(router()),
        }
    }

    /// These tools acting for the caller of the request `context` came in.
    fn acting_for(&self, context: &RequestContext<RoleServer>) -> Tools {
        Tools {
            machines: self.service.as_caller(&caller_of(context)),
            service: self.service.clone(),
            tool_router: Arc::clone(&self.tool_router),
        }
    }
}

/// The caller of a tool call: its request's MCP session, with the rights
/// and scope of the caller the API's token check found (no rights
/// without one).
fn caller_of(context: &RequestContext<RoleServer>) -> Caller {
    let parts = context.extensions.get::<http::request::Parts>();
    let session = parts
        .and_then(|parts| parts.headers.get(HEADER_SESSION_ID))
        .and_then(|id| id.to_str().ok())
        .map(str::to_string);
    let who = Who::Mcp { session };
    match parts.and_then(|parts| parts.extensions.get::<Caller>()) {
        Some(caller) => caller.acting_as(who),
        None => Caller::new(who, Rights::NONE),
    }
}

/// Every family's tools in one router, their texts unwrapped into prose.
fn router() -> ToolRouter<Tools> {
    let mut router = Tools::apps_router()
        + Tools::images_router()
        + Tools::machines_router()
        + Tools::exec_router()
        + Tools::files_router()
        + Tools::logs_router()
        + Tools::volumes_router()
        + Tools::storage_router()
        + Tools::secrets_router()
        + Tools::egress_router();
    for route in router.map.values_mut() {
        reply::unwrap_lines(&mut route.attr);
    }
    router
}

/// The right each tool's service call needs: what `tools/list` asks of
/// the caller's rights, so a token sees only the tools it may use. The
/// call itself is decided by the service's one check, as for any front
/// end; a tool missing here is never listed (a unit test checks none is).
fn right_of(tool: &str) -> Option<Right> {
    Some(match tool {
        "get_egress"
        | "get_egress_log"
        | "get_machine"
        | "get_volume"
        | "list_apps"
        | "list_images"
        | "list_machines"
        | "list_secrets"
        | "list_storage"
        | "list_volume_snapshots"
        | "list_volumes"
        | "tail_logs"
        | "wait_machine" => Right::Read,
        "create_app" | "run_machine" | "start_machine" | "stop_machine" | "restart_machine"
        | "destroy_machine" => Right::Lifecycle,
        "exec" => Right::Exec,
        "read_file" | "write_file" | "list_dir" => Right::Files,
        "create_volume" | "create_volume_snapshot" | "destroy_volume" | "extend_volume" => {
            Right::Volumes
        }
        "create_storage" | "destroy_storage" => Right::Storage,
        "set_secrets" | "unset_secrets" => Right::SecretsWrite,
        "pull_image" => Right::Images,
        "set_egress" => Right::Egress,
        _ => return None,
    })
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    /// The tools whose right the request's caller holds. The answer
    /// depends on the token, so it is never to be cached for others.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let rights = caller_of(&context).rights();
        let tools = self
            .tool_router
            .list_all()
            .into_iter()
            .filter(|tool| right_of(&tool.name).is_some_and(|right| rights.contains(right)))
            .collect();
        let cache_hints = context
            .protocol_version()
            .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28);
        Ok(ListToolsResult {
            result_type: Some(ResultType::COMPLETE),
            tools,
            meta: None,
            next_cursor: None,
            ttl_ms: cache_hints.then_some(0),
            cache_scope: cache_hints.then_some(CacheScope::Private),
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tools = self.acting_for(&context);
        let call = ToolCallContext::new(&tools, request, context);
        self.tool_router.call(call).await
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("roost", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_tool_names_its_right() {
        for tool in super::router().list_all() {
            assert!(
                super::right_of(&tool.name).is_some(),
                "{} has no right",
                tool.name
            );
        }
    }

    #[test]
    fn every_family_is_served() {
        let names: Vec<String> = super::router()
            .list_all()
            .into_iter()
            .map(|tool| tool.name.into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "create_app",
                "create_storage",
                "create_volume",
                "create_volume_snapshot",
                "destroy_machine",
                "destroy_storage",
                "destroy_volume",
                "exec",
                "extend_volume",
                "get_egress",
                "get_egress_log",
                "get_machine",
                "get_volume",
                "list_apps",
                "list_dir",
                "list_images",
                "list_machines",
                "list_secrets",
                "list_storage",
                "list_volume_snapshots",
                "list_volumes",
                "pull_image",
                "read_file",
                "restart_machine",
                "run_machine",
                "set_egress",
                "set_secrets",
                "start_machine",
                "stop_machine",
                "tail_logs",
                "unset_secrets",
                "wait_machine",
                "write_file",
            ]
        );
    }
}
