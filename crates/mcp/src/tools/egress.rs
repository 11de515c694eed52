//! Egress tools: where an app's machines may connect through the egress
//! proxy, and what the proxy decided.

use super::reply::reply;
use super::{AppArgs, Tools};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use roost_types::{EgressDefault, EgressPolicy};
use schemars::JsonSchema;
use serde::Deserialize;

/// What happens to a destination no pattern names.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum DefaultArg {
    Deny,
    Allow,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetEgressArgs {
    /// App whose policy is replaced.
    app: String,
    /// "deny": only destinations an allow pattern names; "allow": every destination no deny
    /// pattern names.
    default: DefaultArg,
    /// Host patterns let through: "deb.debian.org", "*.pypi.org" (subdomains, not the name
    /// itself), "*" (every host), an IP address, each with an optional port
    /// ("github.com:443"). At most 512. Default: none.
    #[serde(default)]
    allow: Vec<String>,
    /// Host patterns refused, same syntax; deny wins over allow. At most 512. Default: none.
    #[serde(default)]
    deny: Vec<String>,
}

#[tool_router(router = egress_router, vis = "pub(super)")]
impl Tools {
    /// Show an app's egress policy: where its machines may connect through the egress proxy
    /// (their HTTP_PROXY/HTTPS_PROXY, at the private network's service address, port 3128).
    /// Returns {"default": "deny"|"allow", "allow": [patterns], "deny": [patterns]}. The host,
    /// private, link-local and metadata addresses and other apps' machines are never
    /// reachable, whatever the policy says.
    #[tool(annotations(read_only_hint = true))]
    async fn get_egress(&self, Parameters(args): Parameters<AppArgs>) -> CallToolResult {
        reply(self.machines.egress_policy(&args.app), |p| {
            format!(
                "app {}: default {}, {} allowed, {} denied patterns",
                args.app,
                p.default,
                p.allow.len(),
                p.deny.len()
            )
        })
    }

    /// Replace an app's egress policy (the whole policy: get_egress first to keep what is
    /// there). Applies to the app's machines' next connections at once, without a restart. A
    /// refused request gets HTTP 403 with a JSON body naming the host, the rule and what
    /// would allow it. Returns the policy as stored (patterns lower-cased).
    #[tool(annotations(idempotent_hint = true))]
    async fn set_egress(&self, Parameters(args): Parameters<SetEgressArgs>) -> CallToolResult {
        let policy = EgressPolicy {
            default: match args.default {
                DefaultArg::Deny => EgressDefault::Deny,
                DefaultArg::Allow => EgressDefault::Allow,
            },
            allow: args.allow,
            deny: args.deny,
        };
        reply(self.machines.set_egress_policy(&args.app, policy), |p| {
            format!(
                "app {}: egress default {}, {} allowed, {} denied patterns",
                args.app,
                p.default,
                p.allow.len(),
                p.deny.len()
            )
        })
    }

    /// The egress proxy's recent decisions for an app's machines (the last 1000, oldest
    /// first, since roost started). Returns {"entries": [{"time", "machine_id", "host",
    /// "port", "method", "decision": "allowed"|"refused", "rule", "bytes_sent",
    /// "bytes_received", "open", "error"?}]}.
    #[tool(annotations(read_only_hint = true))]
    async fn get_egress_log(&self, Parameters(args): Parameters<AppArgs>) -> CallToolResult {
        reply(self.machines.egress_log(&args.app), |log| {
            format!("{} egress decisions", log.entries.len())
        })
    }
}
