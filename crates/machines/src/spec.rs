//! Turning a Fly machine config plus its image into what the runtime runs,
//! and refusing configs that cannot run before anything is created.

use crate::error::{MachineError, Missing, Result};
use roost_image::Image;
use roost_types::{DurationRange, MachineConfig, NumberRange, TextLimit};
use std::collections::BTreeMap;

/// Memory a machine gets when its config names none (Fly's smallest size).
pub const DEFAULT_MEMORY_MB: u64 = 256;
pub const MIN_MEMORY_MB: u64 = 32;

/// Size of a machine's root filesystem when `rootfs.size_gb` is not given:
/// Fly's default rootfs size. The host gives each machine a disk of its
/// size, which bounds what the machine writes to its root filesystem.
pub const DEFAULT_ROOTFS_GB: u64 = 8;

/// The `rootfs.size_gb` of `config`, or the default.
pub(crate) fn rootfs_size_gb(config: &MachineConfig) -> u64 {
    config
        .rootfs
        .as_ref()
        .and_then(|rootfs| rootfs.size_gb)
        .unwrap_or(DEFAULT_ROOTFS_GB)
}

/// Host limits a config is checked against.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    pub cpus: u32,
    pub memory_mb: u64,
}

impl HostLimits {
    pub fn detect() -> HostLimits {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let memory_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("MemTotal:"))
                    .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map(|kib| kib / 1024)
            .unwrap_or(1024);
        HostLimits { cpus, memory_mb }
    }
}

/// The parts of a config that are checked once and then trusted.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    pub cpus: u32,
    pub memory_mb: u64,
}

/// Checks everything in `config` that does not need the image, so bad input
/// is refused before any state changes.
pub fn validate(config: &MachineConfig, limits: HostLimits) -> Result<Sizing> {
    if config.image.trim().is_empty() {
        return Err(MachineError::Missing(Missing::ImageUnnamed));
    }
    let guest = config.guest.clone().unwrap_or_default();
    let cpus = match guest.cpus {
        None => 1,
        Some(n) if n >= 1 && n <= limits.cpus as i64 => n as u32,
        Some(n) => {
            return Err(MachineError::Invalid(format!(
                "config.guest.cpus = {n} is invalid: allowed values are whole numbers from 1 to {} (this host's CPU count)",
                limits.cpus
            )))
        }
    };
    let memory_mb = match guest.memory_mb {
        None => DEFAULT_MEMORY_MB.min(limits.memory_mb),
        Some(n) if n >= MIN_MEMORY_MB as i64 && n as u64 <= limits.memory_mb => n as u64,
        Some(n) => {
            return Err(MachineError::Invalid(format!(
                "config.guest.memory_mb = {n} is invalid: allowed values are {MIN_MEMORY_MB} to {} (this host's memory in MiB)",
                limits.memory_mb
            )))
        }
    };
    if let Some(size_gb) = config.rootfs.as_ref().and_then(|rootfs| rootfs.size_gb) {
        NumberRange::ROOTFS_SIZE_GB
            .check_unsigned("config.rootfs.size_gb", size_gb)
            .map_err(MachineError::Invalid)?;
    }
    if let Some(stop) = &config.stop_config {
        if let Some(signal) = &stop.signal {
            parse_signal(signal)?;
        }
        if let Some(timeout) = &stop.timeout {
            DurationRange::STOP_TIMEOUT
                .parse("config.stop_config.timeout", timeout)
                .map_err(MachineError::Invalid)?;
        }
    }
    for (i, file) in config.files.iter().enumerate() {
        roost_host::check_guest_path(&file.guest_path)
            .map_err(|why| MachineError::Invalid(format!("config.files[{i}].guest_path: {why}")))?;
        if let Some(mode) = file.mode {
            NumberRange::FILE_MODE
                .check(&format!("config.files[{i}].mode"), i64::from(mode))
                .map_err(MachineError::Invalid)?;
        }
        match (&file.raw_value, &file.secret_name) {
            (Some(raw), _) => {
                decode_base64(raw).map_err(|_| {
                    MachineError::Invalid(format!(
                        "config.files[{i}].raw_value must be base64-encoded file content"
                    ))
                })?;
            }
            (None, Some(_)) => {
                return Err(MachineError::Invalid(format!(
                    "config.files[{i}].secret_name is not supported yet; use raw_value (base64 content)"
                )))
            }
            (None, None) => {
                return Err(MachineError::Invalid(format!(
                    "config.files[{i}] needs raw_value (base64 content)"
                )))
            }
        }
    }
    for (key, value) in &config.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(MachineError::Invalid(format!(
                "config.env key {key:?} is invalid: names must be non-empty and contain no '=' or NUL"
            )));
        }
        if value.contains('\0') {
            return Err(MachineError::Invalid(format!(
                "config.env.{key}: the value contains a NUL byte, which an environment variable cannot hold"
            )));
        }
    }
    if let Some(init) = &config.init {
        check_argv("config.init.exec", &init.exec)?;
        check_argv("config.init.entrypoint", &init.entrypoint)?;
        check_argv("config.init.cmd", &init.cmd)?;
    }
    check_metadata(&config.metadata)?;
    roost_types::validate_services(&config.services, &config.checks)
        .map_err(MachineError::Invalid)?;
    Ok(Sizing { cpus, memory_mb })
}

/// Refuses metadata past [`TextLimit`]'s bounds: every key and value is
/// kept in the store and sent with every listing of the machine.
pub fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
    let entries = i64::try_from(metadata.len()).unwrap_or(i64::MAX);
    TextLimit::METADATA_ENTRIES
        .check("config.metadata", entries)
        .map_err(MachineError::Invalid)?;
    for (key, value) in metadata {
        check_metadata_entry(key, value)?;
    }
    Ok(())
}

/// One metadata key and its value against [`TextLimit`]'s bounds. The
/// message names the key only when the key itself is fine.
pub fn check_metadata_entry(key: &str, value: &str) -> Result<()> {
    TextLimit::METADATA_KEY
        .check("a config.metadata key", key)
        .map_err(MachineError::Invalid)?;
    TextLimit::METADATA_VALUE
        .check(&format!("config.metadata.{key}"), value)
        .map_err(MachineError::Invalid)
}

/// A machine's `name` and `region`, when given, against [`TextLimit::NAME`].
pub fn check_placement(name: Option<&str>, region: Option<&str>) -> Result<()> {
    for (field, text) in [("name", name), ("region", region)] {
        if let Some(text) = text {
            TextLimit::NAME
                .check(field, text)
                .map_err(MachineError::Invalid)?;
        }
    }
    Ok(())
}

/// Refuses arguments no process can receive: a NUL byte ends a C string,
/// so the runtime would fail or run something else. The message names the
/// field and index, never the value.
pub fn check_argv(field: &str, args: &[String]) -> Result<()> {
    match args.iter().position(|arg| arg.contains('\0')) {
        Some(index) => Err(MachineError::Invalid(format!(
            "{field}[{index}] contains a NUL byte, which a process argument cannot hold"
        ))),
        None => Ok(()),
    }
}

pub fn decode_base64(text: &str) -> std::result::Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text.trim())
}

/// Parses a Fly signal name (`SIGTERM`, `TERM`, case-insensitive) or number.
pub fn parse_signal(text: &str) -> Result<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    let upper = text.trim().to_ascii_uppercase();
    let parsed = if let Ok(number) = upper.parse::<i32>() {
        Signal::try_from(number).ok()
    } else {
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        name.parse::<Signal>().ok()
    };
    parsed.ok_or_else(|| {
        MachineError::Invalid(format!(
            "unknown signal '{text}': use a name such as SIGTERM, SIGINT, SIGKILL, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGABRT, SIGALRM, SIGPIPE or a signal number"
        ))
    })
}

/// The argv the machine's main process runs, following Fly's `init`
/// semantics: `exec` replaces everything; `entrypoint` replaces the image's
/// entrypoint (and, as in Docker, drops the image's cmd); `cmd` replaces the
/// image's cmd.
pub fn command(config: &MachineConfig, image: &Image) -> Result<Vec<String>> {
    let init = config.init.clone().unwrap_or_default();
    let args = if !init.exec.is_empty() {
        init.exec
    } else {
        let entrypoint_overridden = !init.entrypoint.is_empty();
        let entrypoint = if entrypoint_overridden {
            init.entrypoint
        } else {
            image.config.entrypoint.clone()
        };
        let cmd = if !init.cmd.is_empty() {
            init.cmd
        } else if entrypoint_overridden {
            Vec::new()
        } else {
            image.config.cmd.clone()
        };
        entrypoint.into_iter().chain(cmd).collect()
    };
    if args.is_empty() {
        return Err(MachineError::Invalid(format!(
            "image '{}' has no Entrypoint or Cmd: set config.init.cmd (e.g. [\"sleep\", \"inf\"])",
            image.reference
        )));
    }
    Ok(args)
}

/// The environment of the main process: the image's, then the config's, then
/// the `FLY_*` variables Fly sets, so software written for Fly finds them.
pub fn environment(config: &MachineConfig, image: &Image, fly: &[(&str, &str)]) -> Vec<String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for entry in &image.config.env {
        if let Some((key, value)) = entry.split_once('=') {
            env.insert(key.to_string(), value.to_string());
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    for (key, value) in &config.env {
        env.insert(key.clone(), value.clone());
    }
    for (key, value) in fly {
        env.insert(key.to_string(), value.to_string());
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_types::{MachineGuest, MachineInit};

    const LIMITS: HostLimits = HostLimits {
        cpus: 2,
        memory_mb: 4096,
    };

    fn image(entrypoint: &[&str], cmd: &[&str]) -> Image {
        Image {
            reference: "busybox:latest".into(),
            digest: "sha256:00".into(),
            config: roost_image::ImageConfig {
                entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                env: vec!["PATH=/bin".into(), "A=image".into()],
                ..Default::default()
            },
            layers: vec![],
            size: 0,
            created_at: String::new(),
        }
    }

    fn config_with_init(init: MachineInit) -> MachineConfig {
        MachineConfig {
            image: "busybox".into(),
            init: Some(init),
            ..Default::default()
        }
    }

    #[test]
    fn init_overrides_follow_fly_semantics() {
        let img = image(&["/entry"], &["a", "b"]);
        let plain = MachineConfig {
            image: "busybox".into(),
            ..Default::default()
        };
        assert_eq!(command(&plain, &img).unwrap(), ["/entry", "a", "b"]);
        let cmd = config_with_init(MachineInit {
            cmd: vec!["c".into()],
            ..Default::default()
        });
        assert_eq!(command(&cmd, &img).unwrap(), ["/entry", "c"]);
        let entry = config_with_init(MachineInit {
            entrypoint: vec!["/other".into()],
            ..Default::default()
        });
        assert_eq!(command(&entry, &img).unwrap(), ["/other"]);
        let exec = config_with_init(MachineInit {
            exec: vec!["/bin/sh".into()],
            cmd: vec!["ignored".into()],
            ..Default::default()
        });
        assert_eq!(command(&exec, &img).unwrap(), ["/bin/sh"]);
        let err = command(&plain, &image(&[], &[])).unwrap_err();
        assert!(err.to_string().contains("config.init.cmd"));
    }

    #[test]
    fn environment_layers_image_config_and_fly() {
        let mut config = config_with_init(MachineInit::default());
        config.env.insert("A".into(), "config".into());
        let env = environment(&config, &image(&[], &[]), &[("FLY_MACHINE_ID", "m")]);
        assert!(env.contains(&"A=config".to_string()));
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert!(env.contains(&"FLY_MACHINE_ID=m".to_string()));
    }

    #[test]
    fn sizing_is_checked_against_the_host() {
        let mut config = config_with_init(MachineInit::default());
        assert_eq!(
            validate(&config, LIMITS).unwrap(),
            Sizing {
                cpus: 1,
                memory_mb: DEFAULT_MEMORY_MB
            }
        );
        for (cpus, memory_mb, needle) in [
            (Some(0), None, "guest.cpus = 0"),
            (Some(3), None, "1 to 2"),
            (None, Some(8), "guest.memory_mb = 8"),
            (None, Some(1 << 20), "32 to 4096"),
        ] {
            config.guest = Some(MachineGuest {
                cpus,
                memory_mb,
                ..Default::default()
            });
            let err = validate(&config, LIMITS).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn bad_signals_timeouts_and_files_are_refused() {
        assert!(parse_signal("SIGTERM").is_ok());
        assert!(parse_signal("int").is_ok());
        assert!(parse_signal("9").is_ok());
        assert!(parse_signal("SIGNOPE")
            .unwrap_err()
            .to_string()
            .contains("SIGTERM"));
        let mut config = config_with_init(MachineInit::default());
        config.files = vec![roost_types::MachineFile {
            guest_path: "relative/path".into(),
            raw_value: Some("aGk=".into()),
            ..Default::default()
        }];
        assert!(validate(&config, LIMITS).is_err());
        config.files[0].guest_path = "/etc/motd".into();
        config.files[0].raw_value = Some("%%%".into());
        assert!(validate(&config, LIMITS)
            .unwrap_err()
            .to_string()
            .contains("base64"));
        config.image = " ".into();
        assert!(validate(&config, LIMITS).is_err());
    }

    /// A config with every number and duration field set to what the
    /// strategy drew.
    fn numbers_config(
        numbers: &[i64; 9],
        durations: &[String; 4],
        mode: u32,
        idle: u64,
    ) -> MachineConfig {
        let service = serde_json::json!({
            "internal_port": numbers[2],
            "ports": [{"port": numbers[3], "http_options": {"idle_timeout": idle}},
                      {"start_port": numbers[4], "end_port": numbers[5]}],
            "concurrency": {"soft_limit": numbers[6], "hard_limit": numbers[7]},
            "min_machines_running": numbers[8],
            "checks": [{"type": "http", "port": numbers[3], "interval": durations[1],
                        "timeout": durations[2], "grace_period": durations[3]}],
        });
        MachineConfig {
            image: "busybox".into(),
            guest: Some(MachineGuest {
                cpus: Some(numbers[0]),
                memory_mb: Some(numbers[1]),
                ..Default::default()
            }),
            stop_config: Some(roost_types::StopConfig {
                timeout: Some(durations[0].clone()),
                ..Default::default()
            }),
            files: vec![roost_types::MachineFile {
                guest_path: "/etc/motd".into(),
                raw_value: Some("aGk=".into()),
                mode: Some(mode),
                ..Default::default()
            }],
            services: vec![serde_json::from_value(service).expect("service")],
            ..Default::default()
        }
    }

    /// Mostly values inside `valid`, sometimes any value at all.
    fn number(valid: std::ops::RangeInclusive<i64>) -> proptest::strategy::BoxedStrategy<i64> {
        use proptest::prelude::*;
        prop_oneof![4 => valid, 1 => any::<i64>(), 1 => Just(i64::MAX), 1 => Just(i64::MIN)].boxed()
    }

    /// Mostly durations inside `valid` (whole seconds), sometimes any text.
    fn duration(valid: std::ops::RangeInclusive<u64>) -> proptest::strategy::BoxedStrategy<String> {
        use proptest::prelude::*;
        prop_oneof![
            4 => valid.prop_map(|n| format!("{n}s")),
            1 => any::<f64>().prop_map(|f| f.to_string()),
            1 => any::<u64>().prop_map(|n| format!("{n}s")),
            1 => Just("1e300".to_string()),
            1 => "[0-9.]{1,25}[hms]{0,2}",
        ]
        .boxed()
    }

    proptest::proptest! {
        /// Whatever numbers and durations a config holds, validation does
        /// not panic and accepts it exactly when every field lies inside
        /// its documented range; a refusal names a range.
        #[test]
        fn security_every_number_and_duration_field_is_range_checked(
            numbers in (
                number(1..=2), number(32..=4096), number(1..=65535), number(1..=65535),
                number(1..=100), number(100..=65535), number(1..=10), number(10..=1000),
                number(0..=10),
            ),
            durations in (duration(0..=300), duration(1..=600), duration(1..=60), duration(0..=600)),
            mode in proptest::prop_oneof![4 => 0u32..=0o7777, 1 => proptest::prelude::any::<u32>()],
            idle in proptest::prop_oneof![4 => 1u64..=86_400, 1 => proptest::prelude::any::<u64>()],
            rootfs_gb in proptest::prop_oneof![4 => 1u64..=500, 1 => proptest::prelude::any::<u64>()],
        ) {
            let n = [numbers.0, numbers.1, numbers.2, numbers.3, numbers.4, numbers.5, numbers.6,
                     numbers.7, numbers.8];
            let d = [durations.0, durations.1, durations.2, durations.3];
            let mut config = numbers_config(&n, &d, mode, idle);
            config.rootfs = Some(roost_types::RootfsConfig {
                size_gb: Some(rootfs_gb),
                ..Default::default()
            });
            let port = |v: i64| NumberRange::PORT.check("p", v).is_ok();
            let limit = |v: i64| NumberRange::CONCURRENCY_LIMIT.check("c", v).is_ok();
            let in_range = (1..=i64::from(LIMITS.cpus)).contains(&n[0])
                && (MIN_MEMORY_MB as i64..=LIMITS.memory_mb as i64).contains(&n[1])
                && port(n[2]) && port(n[3])
                && (port(n[4]) && port(n[5]) && n[4] <= n[5])
                && limit(n[6]) && limit(n[7]) && n[6] <= n[7]
                && NumberRange::MIN_MACHINES_RUNNING.check("m", n[8]).is_ok()
                && d.iter().zip([
                    DurationRange::STOP_TIMEOUT, DurationRange::CHECK_INTERVAL,
                    DurationRange::CHECK_TIMEOUT, DurationRange::CHECK_GRACE_PERIOD,
                ]).all(|(text, range)| range.parse("d", text).is_ok())
                && mode <= 0o7777
                && NumberRange::IDLE_TIMEOUT_SECS.check_unsigned("i", idle).is_ok()
                && NumberRange::ROOTFS_SIZE_GB.check_unsigned("r", rootfs_gb).is_ok();
            match validate(&config, LIMITS) {
                Ok(_) => proptest::prop_assert!(in_range, "accepted {:?} {:?} {} {} {}", n, d, mode, idle, rootfs_gb),
                Err(err) => {
                    let message = err.to_string();
                    proptest::prop_assert!(!in_range, "refused: {}", message);
                    proptest::prop_assert!(
                        message.contains("allowed values are") || message.contains("start <= end")
                            || message.contains("soft_limit must be <= hard_limit"),
                        "{}", message
                    );
                }
            }
        }
    }
}
