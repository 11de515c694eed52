//! The log tool: a machine's recent output.

use super::reply::reply;
use super::Tools;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TailLogsArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// Number of most recent lines to return, 1 to 2000. Default 100.
    lines: Option<usize>,
}

#[tool_router(router = logs_router, vis = "pub(super)")]
impl Tools {
    /// Return the last lines of a machine's main process output (stdout and stderr
    /// interleaved, oldest first). Returns {"lines": text}.
    #[tool(annotations(read_only_hint = true))]
    async fn tail_logs(&self, Parameters(args): Parameters<TailLogsArgs>) -> CallToolResult {
        let result = self
            .machines
            .log_tail(&args.app, &args.machine_id, args.lines.unwrap_or(100))
            .map(|lines| json!({"lines": lines}));
        reply(result, |v| {
            format!(
                "{} log lines",
                v["lines"].as_str().map_or(0, |l| l.lines().count())
            )
        })
    }
}
