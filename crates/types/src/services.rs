//! `services` and `checks` of a machine config: what the edge proxy routes
//! to a machine and how it decides the machine is healthy.
//!
//! Shapes follow Fly's `api.MachineService`, `api.MachinePort`,
//! `api.MachineServiceConcurrency` and `api.MachineCheck`, plus the newer
//! fields Fly documents (`autostop` as `"off"|"stop"|"suspend"`,
//! `http_options.idle_timeout`). Fields roost does not act on stay in
//! `extra`, so a client's config round-trips unchanged.

use crate::config::Extra;
use crate::{DurationRange, NumberRange};
use serde::{Deserialize, Serialize};

/// `api.MachineService`: one service the machine offers through the proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineService {
    /// `tcp` (default) or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Port the program inside the machine listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_port: Option<i64>,
    /// Public ports (and their handlers) that reach `internal_port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<MachinePort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ServiceConcurrency>,
    /// Start a stopped machine when a request finds no capacity (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<bool>,
    /// Stop (or suspend) the machine when it has been idle (default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostop: Option<AutostopMode>,
    /// Machines of the app autostop leaves started (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_machines_running: Option<i64>,
    /// Health checks; a machine failing one gets no traffic for this service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<MachineCheck>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// What autostop does with an idle machine. Fly's older API sends a boolean
/// (`true` = stop), its newer one a string; both are accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutostopMode {
    #[default]
    Off,
    Stop,
    /// Suspend; roost has no suspend yet, so the proxy stops instead.
    Suspend,
}

impl<'de> Deserialize<'de> for AutostopMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Bool(true) => Ok(AutostopMode::Stop),
            serde_json::Value::Bool(false) => Ok(AutostopMode::Off),
            serde_json::Value::String(s) => match s.as_str() {
                "off" => Ok(AutostopMode::Off),
                "stop" => Ok(AutostopMode::Stop),
                "suspend" => Ok(AutostopMode::Suspend),
                other => Err(serde::de::Error::custom(format!(
                    "autostop {other:?} is invalid: allowed values are \"off\", \"stop\", \"suspend\", true, false"
                ))),
            },
            other => Err(serde::de::Error::custom(format!(
                "autostop must be \"off\", \"stop\", \"suspend\" or a boolean, got {other}"
            ))),
        }
    }
}

/// `api.MachinePort`: a public port, or a range `start_port..=end_port`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachinePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
    /// `http`, `tls`, `proxy_proto`, ...; none means raw TCP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handlers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_https: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_options: Option<HttpOptions>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl MachinePort {
    /// Whether public port `port` is this entry's port or inside its range.
    pub fn covers(&self, port: u16) -> bool {
        let port = i64::from(port);
        match (self.port, self.start_port, self.end_port) {
            (Some(p), _, _) => p == port,
            (None, Some(start), Some(end)) => start <= port && port <= end,
            _ => false,
        }
    }

    pub fn has_handler(&self, handler: &str) -> bool {
        self.handlers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(handler))
    }
}

/// `api.HTTPOptions`, with Fly's newer `idle_timeout`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_backend: Option<bool>,
    /// Seconds a proxied connection or stream may carry no bytes before the
    /// proxy closes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `api.MachineServiceConcurrency`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceConcurrency {
    /// `connections` (default) or `requests`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Above this load the proxy prefers starting another machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_limit: Option<i64>,
    /// At this load the machine gets no more traffic; requests queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_limit: Option<i64>,
}

/// Fly's defaults when a service names no concurrency.
pub const DEFAULT_SOFT_LIMIT: u64 = 20;
pub const DEFAULT_HARD_LIMIT: u64 = 25;

/// `api.MachineCheck`: a TCP or HTTP health check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineCheck {
    /// `tcp` or `http`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Port inside the machine; a service check defaults to `internal_port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Go duration (`"15s"`); default 15s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Go duration; default 2s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Time after a start before the first check counts; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `http` (https is refused: the proxy has no TLS to machines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<MachineHttpHeader>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `api.MachineHTTPHeader`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineHttpHeader {
    pub name: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// `CheckStatus`: the latest result of one check, in `Machine.checks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStatus {
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub updated_at: String,
}

/// Handlers roost's proxy knows; others are refused so a typo is not a
/// silently raw-TCP service.
const KNOWN_HANDLERS: &[&str] = &["http", "tls", "proxy_proto", "pg_tls", "edge_http"];

/// Checks `services` and `checks` of a config; the message names the field
/// and says what is allowed.
pub fn validate_services(
    services: &[MachineService],
    checks: &std::collections::BTreeMap<String, MachineCheck>,
) -> Result<(), String> {
    let port_ok = |p: i64| (1..=65535).contains(&p);
    for (i, service) in services.iter().enumerate() {
        let at = format!("config.services[{i}]");
        match service.protocol.as_deref() {
            None | Some("tcp") | Some("udp") => {}
            Some(other) => {
                return Err(format!(
                    "{at}.protocol = {other:?} is invalid: allowed values are \"tcp\" and \"udp\""
                ))
            }
        }
        match service.internal_port {
            Some(p) if port_ok(p) => {}
            Some(p) => {
                return Err(format!(
                    "{at}.internal_port = {p} is invalid: allowed values are 1 to 65535"
                ))
            }
            None => {
                return Err(format!(
                    "{at}.internal_port is required: the port the program in the machine listens on"
                ))
            }
        }
        for (j, port) in service.ports.iter().enumerate() {
            let at = format!("{at}.ports[{j}]");
            match (port.port, port.start_port, port.end_port) {
                (Some(p), _, _) if !port_ok(p) => {
                    return Err(format!(
                        "{at}.port = {p} is invalid: allowed values are 1 to 65535"
                    ))
                }
                (Some(_), _, _) => {}
                (None, Some(s), Some(e)) if port_ok(s) && port_ok(e) && s <= e => {}
                (None, Some(s), Some(e)) => {
                    return Err(format!(
                        "{at}: start_port {s} .. end_port {e} is invalid: both 1 to 65535, start <= end"
                    ))
                }
                _ => {
                    return Err(format!(
                        "{at} needs `port`, or `start_port` and `end_port`"
                    ))
                }
            }
            if let Some(idle) = port.http_options.as_ref().and_then(|o| o.idle_timeout) {
                NumberRange::IDLE_TIMEOUT_SECS
                    .check_unsigned(&format!("{at}.http_options.idle_timeout"), idle)?;
            }
            if let Some(h) = port
                .handlers
                .iter()
                .find(|h| !KNOWN_HANDLERS.contains(&h.to_ascii_lowercase().as_str()))
            {
                return Err(format!(
                    "{at}.handlers contains {h:?}: allowed values are {}; no handler means raw TCP",
                    KNOWN_HANDLERS.join(", ")
                ));
            }
        }
        if let Some(c) = &service.concurrency {
            match c.kind.as_deref() {
                None | Some("connections") | Some("requests") => {}
                Some(other) => {
                    return Err(format!(
                        "{at}.concurrency.type = {other:?} is invalid: allowed values are \"connections\" and \"requests\""
                    ))
                }
            }
            for (name, value) in [("soft_limit", c.soft_limit), ("hard_limit", c.hard_limit)] {
                if let Some(v) = value {
                    NumberRange::CONCURRENCY_LIMIT.check(&format!("{at}.concurrency.{name}"), v)?;
                }
            }
            if let (Some(soft), Some(hard)) = (c.soft_limit, c.hard_limit) {
                if soft > hard {
                    return Err(format!(
                        "{at}.concurrency: soft_limit {soft} is above hard_limit {hard}; soft_limit must be <= hard_limit"
                    ));
                }
            }
        }
        if let Some(n) = service.min_machines_running {
            NumberRange::MIN_MACHINES_RUNNING.check(&format!("{at}.min_machines_running"), n)?;
        }
        for (j, check) in service.checks.iter().enumerate() {
            validate_check(&format!("{at}.checks[{j}]"), check, true)?;
        }
    }
    for (name, check) in checks {
        validate_check(&format!("config.checks.{name}"), check, false)?;
    }
    Ok(())
}

fn validate_check(at: &str, check: &MachineCheck, in_service: bool) -> Result<(), String> {
    match check.kind.as_deref() {
        Some("tcp") | Some("http") => {}
        None if in_service => {}
        None => return Err(format!("{at}.type is required: \"tcp\" or \"http\"")),
        Some(other) => {
            return Err(format!(
                "{at}.type = {other:?} is invalid: allowed values are \"tcp\" and \"http\""
            ))
        }
    }
    match check.port {
        Some(p) => {
            NumberRange::PORT.check(&format!("{at}.port"), p)?;
        }
        None if !in_service => {
            return Err(format!(
                "{at}.port is required: the port inside the machine to check"
            ))
        }
        _ => {}
    }
    for (name, value, range) in [
        ("interval", &check.interval, DurationRange::CHECK_INTERVAL),
        ("timeout", &check.timeout, DurationRange::CHECK_TIMEOUT),
        (
            "grace_period",
            &check.grace_period,
            DurationRange::CHECK_GRACE_PERIOD,
        ),
    ] {
        if let Some(text) = value {
            range.parse(&format!("{at}.{name}"), text)?;
        }
    }
    match check.protocol.as_deref() {
        None | Some("http") => {}
        Some(other) => {
            return Err(format!(
            "{at}.protocol = {other:?} is not supported: roost checks machines over plain \"http\""
        ))
        }
    }
    if let Some(path) = check.path.as_deref().filter(|p| !p.starts_with('/')) {
        return Err(format!(
            "{at}.path = {path:?} is invalid: it must start with '/'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn fly_service_round_trips() {
        let json = serde_json::json!({
            "protocol": "tcp",
            "internal_port": 8080,
            "ports": [{"port": 80, "handlers": ["http"], "http_options": {"idle_timeout": 600, "h2_backend": false}},
                      {"port": 443, "handlers": ["tls", "http"], "tls_options": {"alpn": ["h2"]}}],
            "concurrency": {"type": "requests", "soft_limit": 10, "hard_limit": 20},
            "autostart": true,
            "autostop": "stop",
            "min_machines_running": 1,
            "checks": [{"type": "http", "path": "/health", "interval": "10s"}],
            "force_instance_key": "x"
        });
        let service: MachineService = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(service.autostop, Some(AutostopMode::Stop));
        assert!(service.ports[0].covers(80) && !service.ports[0].covers(81));
        assert_eq!(serde_json::to_value(&service).unwrap(), json);
        let legacy: MachineService =
            serde_json::from_value(serde_json::json!({"internal_port": 1, "autostop": true}))
                .unwrap();
        assert_eq!(legacy.autostop, Some(AutostopMode::Stop));
        assert!(
            serde_json::from_value::<MachineService>(serde_json::json!({"autostop": "nap"}))
                .is_err()
        );
    }

    #[test]
    fn bad_services_are_named() {
        let service =
            |json: serde_json::Value| -> MachineService { serde_json::from_value(json).unwrap() };
        let none = BTreeMap::new();
        let cases = [
            (serde_json::json!({}), "internal_port is required"),
            (
                serde_json::json!({"internal_port": 70000}),
                "internal_port = 70000",
            ),
            (
                serde_json::json!({"internal_port": 80, "ports": [{"port": 80, "handlers": ["htp"]}]}),
                "handlers contains \"htp\"",
            ),
            (
                serde_json::json!({"internal_port": 80, "concurrency": {"soft_limit": 5, "hard_limit": 2}}),
                "soft_limit 5 is above hard_limit 2",
            ),
            (
                serde_json::json!({"internal_port": 80, "checks": [{"type": "http", "interval": "soon"}]}),
                "checks[0].interval",
            ),
        ];
        for (json, expected) in cases {
            let err = validate_services(&[service(json)], &none).unwrap_err();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
        let mut checks = BTreeMap::new();
        checks.insert(
            "alive".to_string(),
            MachineCheck {
                kind: Some("tcp".into()),
                ..Default::default()
            },
        );
        let err = validate_services(&[], &checks).unwrap_err();
        assert!(
            err.contains("config.checks.alive.port is required"),
            "{err}"
        );
    }
}
