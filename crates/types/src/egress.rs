//! Egress, roost's extension: each app's policy of where its machines may
//! connect through the egress proxy, the audit log of its decisions and
//! each machine's counters. Shapes of `GET/PUT /v1/apps/{app}/egress` and
//! `GET /v1/apps/{app}/egress/log`.

use serde::{Deserialize, Serialize};

/// What happens to a destination no rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EgressDefault {
    Allow,
    Deny,
}

impl std::fmt::Display for EgressDefault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EgressDefault::Allow => "allow",
            EgressDefault::Deny => "deny",
        })
    }
}

impl std::str::FromStr for EgressDefault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "allow" => Ok(EgressDefault::Allow),
            "deny" => Ok(EgressDefault::Deny),
            other => Err(format!(
                "egress default {other:?} is neither \"allow\" nor \"deny\""
            )),
        }
    }
}

/// An app's egress policy. Host patterns (`mirror.example.org`,
/// `*.example.com`, `git.example.net:443`, `*:25`, IP literals) have an
/// optional port; a destination matching any `deny` pattern is refused
/// (deny wins), else one matching an `allow` pattern is let through, else
/// `default` decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPolicy {
    pub default: EgressDefault,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

impl EgressPolicy {
    /// A policy with no rules.
    pub fn only(default: EgressDefault) -> EgressPolicy {
        EgressPolicy {
            default,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// One decision of the egress proxy, as the audit log lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressLogEntry {
    /// When the decision was made (RFC 3339, UTC).
    pub time: String,
    pub machine_id: String,
    pub host: String,
    pub port: u16,
    /// `CONNECT` for a tunnel, else the HTTP method forwarded.
    pub method: String,
    /// `allowed` or `refused`.
    pub decision: String,
    /// What decided: `allow PATTERN`, `deny PATTERN`, `default allow|deny`,
    /// or `guard: ...` for a destination egress never reaches.
    pub rule: String,
    /// Whether the request carried a tokenizer secret.
    #[serde(default)]
    pub tokenizer: bool,
    /// Bytes sent to and received from the destination so far.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// True while the connection to the destination is open.
    #[serde(default)]
    pub open: bool,
    /// Why an allowed request still failed (name lookup, connect, TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/apps/{app}/egress/log`: the app's most recent decisions,
/// oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressLog {
    pub entries: Vec<EgressLogEntry>,
}

/// A machine's egress since roost started, in its API view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineEgress {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Connections to the egress proxy open now.
    pub open_connections: u64,
    /// Requests and tunnels let through, and refused.
    pub allowed: u64,
    pub refused: u64,
}
