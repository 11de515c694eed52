use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Fields a client sent that roost does not interpret (yet). Kept verbatim so
/// that a config read back from roost equals the config written.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// `api.MachineConfig`: what a machine runs and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineConfig {
    #[serde(default)]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<MachineInit>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<MachineGuest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<MachineRestart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_destroy: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<MachineFile>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_config: Option<StopConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootfsConfig>,
    /// Volumes mounted into the machine at every start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MachineMount>,
    /// What the edge proxy routes to this machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<crate::services::MachineService>,
    /// Named health checks of the machine (reported in `Machine.checks`;
    /// unlike service checks they do not gate routing).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, crate::services::MachineCheck>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `api.MachineMount`: a volume and where the machine sees it. Fly's
/// auto-extension fields (`add_size_gb`, `extend_threshold_percent`,
/// `size_gb_limit`) are kept in `extra` and not acted on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineMount {
    /// Volume id (`vol_...`).
    pub volume: String,
    /// Absolute path inside the machine.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `api.MachineInit`: overrides of the image's entrypoint and command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineInit {
    /// Replaces entrypoint and cmd entirely.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `api.MachineGuest`: the machine's size.
///
/// `runtime` is a roost extension: the OCI runtime (`crun` or `runc`) that
/// runs this machine, overriding the host default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineGuest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[serde(rename = "no")]
    No,
    #[serde(rename = "always")]
    Always,
    /// Fly's default when no policy is set.
    #[default]
    #[serde(rename = "on-failure")]
    OnFailure,
}

/// `api.MachineRestart`: what happens when the main process exits on its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineRestart {
    #[serde(default)]
    pub policy: RestartPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

/// `api.File`: a file written into the rootfs before every start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineFile {
    pub guest_path: String,
    /// Base64 of the file's content, as in Fly's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// `api.StopConfig`: how a stop asks the main process to exit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StopConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Go duration string or seconds; a JSON number is accepted too.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub timeout: Option<String>,
}

/// When a machine's root filesystem is reset to the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsPersist {
    /// Reset at every start.
    Never,
    /// Kept across `restart`, reset when a stopped machine starts.
    Restart,
    /// Kept until the machine is destroyed or its image changes. roost's
    /// default, because robots build machines up incrementally.
    #[default]
    Always,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootfsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist: Option<RootfsPersist>,
    /// Size of the root filesystem in GB (GiB), Fly's `rootfs.size_gb`:
    /// the most a machine can write outside its volumes. 8 when absent;
    /// 1 to 500 ([`crate::NumberRange::ROOTFS_SIZE_GB`]). It may grow with
    /// an update, never shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Accepts `"10s"`, `"10"` or `10` for fields Fly documents as strings but
/// clients commonly send as numbers.
pub(crate) fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a duration string like \"30s\" or a number of seconds, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_round_trip() {
        let json = serde_json::json!({
            "image": "busybox:latest",
            "services": [{"internal_port": 8080}],
            "guest": {"cpus": 1, "memory_mb": 256, "gpu_kind": "none"},
            "init": {"cmd": ["sleep", "1"], "swap_size_mb": 0},
            "stop_config": {"signal": "SIGINT", "timeout": 5}
        });
        let config: MachineConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(config.guest.as_ref().unwrap().memory_mb, Some(256));
        assert_eq!(
            config.stop_config.as_ref().unwrap().timeout.as_deref(),
            Some("5")
        );
        let back = serde_json::to_value(&config).unwrap();
        assert_eq!(back["services"], json["services"]);
        assert_eq!(back["guest"]["gpu_kind"], "none");
        assert_eq!(back["init"]["swap_size_mb"], 0);
    }

    #[test]
    fn restart_policy_names_match_fly() {
        let restart: MachineRestart =
            serde_json::from_str(r#"{"policy":"on-failure","max_retries":3}"#).unwrap();
        assert_eq!(restart.policy, RestartPolicy::OnFailure);
        assert!(serde_json::from_str::<MachineRestart>(r#"{"policy":"sometimes"}"#).is_err());
    }
}
