use crate::config::{string_or_number, MachineConfig};
use crate::state::MachineState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `ImageRef`: the image a machine version runs, resolved at create/update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `MachineEvent`: one entry of a machine's ordered history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub source: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
}

/// `Machine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub id: String,
    pub name: String,
    pub state: MachineState,
    pub region: String,
    pub instance_id: String,
    pub private_ip: String,
    pub config: MachineConfig,
    pub image_ref: ImageRef,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub events: Vec<MachineEvent>,
    /// Latest results of the machine's health checks (service checks and
    /// `config.checks`), kept by the edge proxy that runs them.
    #[serde(default)]
    pub checks: Vec<crate::services::CheckStatus>,
    /// Set only in the response to a create that asked for a lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// roost extension: true while the proxy must not route to the machine.
    #[serde(default)]
    pub cordoned: bool,
    /// roost extension: what the machine sent and received through the
    /// egress proxy since roost started; absent before its first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<crate::MachineEgress>,
}

/// `CreateMachineRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateMachineRequest {
    pub config: MachineConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_launch: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_service_registration: bool,
    /// roost extension: credentials for pulling `config.image` from its registry when the
    /// image is not in roost's store yet. Used for that pull only, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<RegistryAuth>,
}

/// Username and password for an image registry (roost extension).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

/// Keeps the password out of logs.
impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// `UpdateMachineRequest`: replaces the machine's config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateMachineRequest {
    pub config: MachineConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_launch: bool,
    /// When set, the update only applies if the machine is still at this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// roost extension: as in [`CreateMachineRequest::registry_auth`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<RegistryAuth>,
}

/// `StopRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StopRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub timeout: Option<String>,
}

/// `SignalRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRequest {
    pub signal: String,
}

/// `MachineExecRequest`: `cmd` is a shell-style string split on whitespace,
/// `command` an argv array; `command` wins when both are given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// The result of an exec, as Fly returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecResponse {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    #[serde(default)]
    pub exit_signal: i32,
}

/// `ProcessStat`: one process inside a machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStat {
    pub pid: i32,
    pub command: String,
    pub directory: String,
    pub cpu: u64,
    pub rss: u64,
    pub rtime: u64,
    pub stime: u64,
    pub listen_sockets: Vec<ListenSocket>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListenSocket {
    pub proto: String,
    pub address: String,
}

/// `MachineVersion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineVersion {
    pub version: String,
    pub user_config: MachineConfig,
}

/// `CreateLeaseRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateLeaseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seconds; roost defaults to 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// `Lease`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub nonce: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub owner: String,
    pub description: String,
    pub version: String,
}

/// The lease as roost returns it: the spec's flat `Lease` fields plus the
/// `{status, data}` envelope that flyctl reads, so both kinds of client parse
/// the same body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseResponse {
    #[serde(flatten)]
    pub lease: Lease,
    pub status: String,
    pub data: Lease,
}

impl From<Lease> for LeaseResponse {
    fn from(lease: Lease) -> Self {
        LeaseResponse {
            data: lease.clone(),
            lease,
            status: "success".to_string(),
        }
    }
}
