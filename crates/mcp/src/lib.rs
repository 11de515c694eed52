//! roost's MCP server: the platform API as MCP tools for LLM agents.
//!
//! There is one tool implementation, [`Tools`], over the same
//! [`roost_machines::Machines`] service the HTTP API calls. It is served two
//! ways:
//! - Streamable HTTP at `/mcp` on the API listener ([`http_service`]), behind
//!   the API's bearer-token check, for every protocol version rmcp supports;
//! - stdio for a local agent ([`serve_stdio`]), which is a relay to that
//!   `/mcp` endpoint rather than a second server, so tool logic, auth and
//!   token scoping stay in the daemon.

mod bridge;
mod http;
mod tools;

pub use bridge::{serve_stdio, BridgeError};
pub use http::{http_service, HttpOptions, McpHttpService};
pub use tools::Tools;
