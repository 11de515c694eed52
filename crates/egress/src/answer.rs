//! The proxy's own answers: JSON bodies a robot can act on, naming the
//! host, the rule that refused it and the call that would allow it.

use crate::policy::{Destination, Rule};
use crate::proxy::{MachineRef, ProxyBody};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty, Full};
use roost_destination_guard::Refusal;
use serde_json::json;
use std::net::IpAddr;

/// A status and a JSON body `{"error": ..., ...}`.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
    /// Close the client connection after it.
    pub close: bool,
}

impl Answer {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> Answer {
        Answer {
            status,
            body: json!({ "error": error.into() }),
            close: false,
        }
    }

    pub(crate) fn closing(mut self) -> Answer {
        self.close = true;
        self
    }
}

pub(crate) fn bad_request(error: impl Into<String>) -> Answer {
    Answer::new(StatusCode::BAD_REQUEST, error)
}

pub(crate) fn not_a_machine(peer: IpAddr) -> Answer {
    Answer::new(
        StatusCode::FORBIDDEN,
        format!("{peer} is no machine's address: the egress proxy serves machines on their private network only"),
    )
}

pub(crate) fn too_many_connections(machine: &MachineRef, limit: usize) -> Answer {
    Answer::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "machine {} already has {limit} connections to the egress proxy open, its limit: close some, or reuse them (keep-alive)",
            machine.id
        ),
    )
}

pub(crate) fn app_gone(machine: &MachineRef) -> Answer {
    Answer::new(
        StatusCode::FORBIDDEN,
        format!("app {} no longer exists, so it has no egress", machine.app),
    )
}

/// The refusal of `destination` by the app's policy (`rule`), with what
/// would let it through: for a deny rule, removing it (deny wins); for
/// the default, an allow rule naming it.
pub(crate) fn refused_by_policy(
    machine: &MachineRef,
    destination: &Destination,
    rule: &Rule,
) -> Answer {
    let app = &machine.app;
    let pattern = destination.pattern();
    let (why, allow_with) = match rule {
        Rule::Deny(denied) => (
            format!("it matches the deny rule {denied}, and deny wins over allow"),
            format!(
                "remove \"{denied}\" from the app's deny list: roost egress set -a {app} (or PUT /v1/apps/{app}/egress, or the MCP tool set_egress) with the list without it"
            ),
        ),
        _ => (
            "no allow rule matches it and the app's default is deny".to_string(),
            format!(
                "roost egress allow -a {app} {pattern} (or add {pattern:?} to allow with PUT /v1/apps/{app}/egress, or the MCP tool set_egress)"
            ),
        ),
    };
    refusal_of(machine, destination, rule.to_string(), why, allow_with)
}

/// The refusal of a destination that resolved to addresses egress never
/// reaches, whatever the policy (`rule`, which allowed it) says.
pub(crate) fn refused_by_guard(
    machine: &MachineRef,
    destination: &Destination,
    rule: &Rule,
    refusal: &Refusal,
) -> Answer {
    refusal_of(
        machine,
        destination,
        format!("guard: {refusal}"),
        format!(
            "{} resolves to {refusal}, which egress never reaches whatever the policy says (it allowed this by {rule})",
            destination.host
        ),
        format!(
            "no policy can: only the operator can let exactly {} through, with roost up --egress-allow-addr",
            refusal.addr
        ),
    )
}

fn refusal_of(
    machine: &MachineRef,
    destination: &Destination,
    rule: String,
    why: String,
    allow_with: String,
) -> Answer {
    Answer {
        status: StatusCode::FORBIDDEN,
        body: json!({
            "error": format!("egress to {destination} is refused for app {}: {why}", machine.app),
            "host": destination.host,
            "port": destination.port,
            "app": machine.app,
            "machine_id": machine.id,
            "rule": rule,
            "allow_with": allow_with,
        }),
        close: false,
    }
}

pub(crate) fn upstream_failed(destination: &Destination, error: &str) -> Answer {
    Answer::new(
        StatusCode::BAD_GATEWAY,
        format!("egress to {destination} failed: {error}"),
    )
}

pub(crate) fn json(body: &serde_json::Value) -> ProxyBody {
    Full::new(Bytes::from(format!("{body}\n")))
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}
