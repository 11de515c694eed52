//! Wire types of the Fly Machines API v1 as roost speaks it.
//!
//! Every type here serializes to the JSON field names of the published Fly
//! Machines OpenAPI spec, so an existing Fly client pointed at roost works
//! unchanged. Configuration types keep fields roost does not interpret yet in
//! an `extra` map, so a client's full config round-trips instead of being
//! silently truncated.
//!
//! This crate has no behaviour beyond (de)serialization and small, pure
//! validation helpers that the API, the CLI, the orchestrator and the MCP
//! server all share.

mod app;
mod config;
mod egress;
mod error;
mod limits;
mod machine;
mod secrets;
mod services;
mod state;
mod tokens;
mod volume;

pub use app::{App, CreateAppRequest, ListApp, ListAppsResponse, Organization};
pub use config::{
    MachineConfig, MachineFile, MachineGuest, MachineInit, MachineMount, MachineRestart,
    RestartPolicy, RootfsConfig, RootfsPersist, StopConfig,
};
pub use egress::{EgressDefault, EgressLog, EgressLogEntry, EgressPolicy, MachineEgress};
pub use error::{ErrorResponse, Missing};
pub use limits::{DurationRange, NumberRange, TextLimit};
pub use machine::{
    CreateLeaseRequest, CreateMachineRequest, ExecRequest, ExecResponse, ImageRef, Lease,
    LeaseResponse, ListenSocket, Machine, MachineEvent, MachineVersion, ProcessStat, RegistryAuth,
    SignalRequest, StopRequest, UpdateMachineRequest,
};
pub use secrets::{AppSecret, AppSecrets, SetSecretRequest, UpdateSecretsRequest};
pub use services::{
    validate_services, AutostopMode, CheckStatus, HttpOptions, MachineCheck, MachineHttpHeader,
    MachinePort, MachineService, ServiceConcurrency, DEFAULT_HARD_LIMIT, DEFAULT_SOFT_LIMIT,
};
pub use state::{MachineState, ParseStateError};
pub use tokens::{CreatedToken, ListTokensResponse, TokenCaveats, TokenInfo};
pub use volume::{
    CreateVolumeRequest, ExtendVolumeRequest, ExtendVolumeResponse, UpdateVolumeRequest, Volume,
    VolumeSnapshot,
};

/// Parses a duration the way Fly's API accepts them: a Go duration string
/// (`"30s"`, `"1m30s"`, `"500ms"`) or a bare number of seconds (`"10"`).
///
/// Returns `None` for anything else, including durations too long for
/// [`std::time::Duration`], so callers can produce an error message naming
/// the field and its range ([`DurationRange`]).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(seconds).ok();
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_in_go_and_seconds_forms() {
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
