//! The exec tool: a command inside a started machine.

use super::reply::reply;
use super::Tools;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use roost_types::ExecRequest;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExecArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters) of a started machine.
    machine_id: String,
    /// Command as an argv array, run without a shell, e.g. ["ls", "-la", "/app"].
    /// For pipes, redirections or several commands use ["sh", "-c", "cd /app && make 2>&1"].
    command: Vec<String>,
    /// Seconds before the command is killed, 1 to 300. Default 30.
    timeout_seconds: Option<u64>,
}

#[tool_router(router = exec_router, vis = "pub(super)")]
impl Tools {
    /// Run a command inside a started machine, with the main process's environment, user and
    /// working directory, and wait for it. Returns {"exit_code", "stdout", "stderr"}; a
    /// non-zero exit code is reported, not treated as a tool failure. The machine must be
    /// started (call start_machine first if it is stopped).
    #[tool]
    async fn exec(&self, Parameters(args): Parameters<ExecArgs>) -> CallToolResult {
        let request = ExecRequest {
            command: args.command,
            timeout: args.timeout_seconds,
            ..Default::default()
        };
        let result = self
            .machines
            .exec(&args.app, &args.machine_id, request)
            .await
            .map(|out| {
                json!({"exit_code": out.exit_code, "stdout": out.stdout, "stderr": out.stderr})
            });
        reply(result, |v| format!("exit code {}", v["exit_code"]))
    }
}
