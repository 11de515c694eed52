//! The ranges that the API's number and duration fields accept, and the
//! lengths of its names and metadata.
//!
//! They live here, next to the wire types, so that the HTTP API, the MCP
//! tools and the orchestrator refuse the same values with the same message,
//! which names the field and the allowed range. A value outside a range is
//! refused before anything is done with it: arithmetic on durations and
//! timestamps never sees one (a duration of `1e300` seconds once panicked
//! the request's task).

use std::time::Duration;

/// An inclusive range of a duration field, given as seconds (`"10"`) or a
/// Go duration (`"1m30s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl DurationRange {
    /// Stop timeouts (`stop`, `restart`, `config.stop_config.timeout`): how
    /// long a main process gets between the stop signal and SIGKILL; Fly's
    /// `kill_timeout` has the same bound.
    pub const STOP_TIMEOUT: DurationRange = DurationRange::secs(0, 300);
    /// Health check intervals.
    pub const CHECK_INTERVAL: DurationRange = DurationRange::secs(1, 86_400);
    /// Health check timeouts.
    pub const CHECK_TIMEOUT: DurationRange = DurationRange {
        min: Duration::from_millis(1),
        max: Duration::from_secs(3_600),
    };
    /// Time a machine gets after a start before failing checks count.
    pub const CHECK_GRACE_PERIOD: DurationRange = DurationRange::secs(0, 86_400);

    const fn secs(min: u64, max: u64) -> DurationRange {
        DurationRange {
            min: Duration::from_secs(min),
            max: Duration::from_secs(max),
        }
    }

    /// Parses `text` (see [`crate::parse_duration`]) as the value of
    /// `field` and checks that it is in range.
    pub fn parse(&self, field: &str, text: &str) -> Result<Duration, String> {
        match crate::parse_duration(text) {
            Some(duration) if (self.min..=self.max).contains(&duration) => Ok(duration),
            _ => Err(format!(
                "{field} = {text:?} is invalid: allowed values are {} to {}, as seconds (\"10\") or a duration such as \"30s\", \"1m30s\", \"500ms\"",
                human(self.min),
                human(self.max)
            )),
        }
    }
}

/// An inclusive range of a whole-number field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberRange {
    pub min: i64,
    pub max: i64,
    /// What the number counts, for the message (`"seconds"`), or `""`.
    pub unit: &'static str,
}

impl NumberRange {
    /// `wait?timeout=`, in seconds.
    pub const WAIT_TIMEOUT_SECS: NumberRange = NumberRange::new(1, 300, "seconds");
    /// An exec's `timeout`, in seconds.
    pub const EXEC_TIMEOUT_SECS: NumberRange = NumberRange::new(1, 300, "seconds");
    /// A lease's `ttl` (and a create's `lease_ttl`), in seconds.
    pub const LEASE_TTL_SECS: NumberRange = NumberRange::new(1, 3_600, "seconds");
    /// TCP and UDP ports.
    pub const PORT: NumberRange = NumberRange::new(1, 65_535, "");
    /// A service's `concurrency.soft_limit` and `hard_limit`.
    pub const CONCURRENCY_LIMIT: NumberRange = NumberRange::new(1, 1_000_000, "");
    /// A service's `min_machines_running`.
    pub const MIN_MACHINES_RUNNING: NumberRange = NumberRange::new(0, 100_000, "");
    /// A port's `http_options.idle_timeout`, in seconds.
    pub const IDLE_TIMEOUT_SECS: NumberRange = NumberRange::new(1, 86_400, "seconds");
    /// `config.files[].mode`: permission bits, setuid/setgid/sticky included.
    pub const FILE_MODE: NumberRange = NumberRange::new(0, 0o7777, "(octal 0 to 7777)");
    /// `config.rootfs.size_gb`, in GB (GiB); the largest is Fly's volume
    /// limit. The disk is sparse: the host pays for what is written.
    pub const ROOTFS_SIZE_GB: NumberRange = NumberRange::new(1, 500, "GB");

    pub const fn new(min: i64, max: i64, unit: &'static str) -> NumberRange {
        NumberRange { min, max, unit }
    }

    /// Checks `value` as the value of `field`.
    pub fn check(&self, field: &str, value: i64) -> Result<i64, String> {
        if (self.min..=self.max).contains(&value) {
            return Ok(value);
        }
        Err(self.refusal(field, value))
    }

    /// [`NumberRange::check`] for unsigned values, which may not fit `i64`.
    pub fn check_unsigned(&self, field: &str, value: u64) -> Result<u64, String> {
        match i64::try_from(value) {
            Ok(signed) if (self.min..=self.max).contains(&signed) => Ok(value),
            _ => Err(self.refusal(field, value)),
        }
    }

    fn refusal(&self, field: &str, value: impl std::fmt::Display) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        format!(
            "{field} = {value} is invalid: allowed values are {} to {}{unit}",
            self.min, self.max
        )
    }
}

/// The lengths a text field may have, in bytes (of its UTF-8). Refusals
/// name the field and its length, never the text, which may be large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimit {
    pub min: usize,
    pub max: usize,
}

impl TextLimit {
    /// A machine's `name` and `region`, an app's `org_slug` and `network`:
    /// one DNS label's length.
    pub const NAME: TextLimit = TextLimit::new(1, 63);
    /// A key of a machine's `config.metadata`.
    pub const METADATA_KEY: TextLimit = TextLimit::new(1, 256);
    /// A value of a machine's `config.metadata`.
    pub const METADATA_VALUE: TextLimit = TextLimit::new(0, 4_096);
    /// How many keys a machine's `config.metadata` may hold.
    pub const METADATA_ENTRIES: NumberRange = NumberRange::new(0, 64, "keys");

    pub const fn new(min: usize, max: usize) -> TextLimit {
        TextLimit { min, max }
    }

    /// Checks `text` as the value of `field`. Control characters (NUL
    /// included) are refused too: no name or metadata needs them.
    pub fn check(&self, field: &str, text: &str) -> Result<(), String> {
        if text.chars().any(char::is_control) {
            return Err(format!(
                "{field} contains a control character: use printable text of {} to {} bytes",
                self.min, self.max
            ));
        }
        if (self.min..=self.max).contains(&text.len()) {
            return Ok(());
        }
        Err(format!(
            "{field} is {} bytes long: allowed are {} to {} bytes",
            text.len(),
            self.min,
            self.max
        ))
    }
}

/// `90s` as `1m30s`-style text: whole hours, minutes or seconds when exact,
/// milliseconds otherwise.
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.subsec_nanos() != 0 {
        format!("{}ms", duration.as_millis())
    } else if secs != 0 && secs.is_multiple_of(3_600) {
        format!("{}h", secs / 3_600)
    } else if secs != 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_name_the_field_and_the_range() {
        let err = DurationRange::STOP_TIMEOUT
            .parse("timeout", "1e300")
            .unwrap_err();
        assert!(err.contains("timeout = \"1e300\""), "{err}");
        assert!(err.contains("0s to 5m"), "{err}");
        assert_eq!(
            DurationRange::STOP_TIMEOUT.parse("timeout", "1m30s"),
            Ok(Duration::from_secs(90))
        );
        let err = NumberRange::WAIT_TIMEOUT_SECS
            .check_unsigned("timeout", u64::MAX)
            .unwrap_err();
        assert_eq!(
            err,
            format!(
                "timeout = {} is invalid: allowed values are 1 to 300 seconds",
                u64::MAX
            )
        );
        assert_eq!(human(Duration::from_millis(1)), "1ms");
        assert_eq!(human(Duration::from_secs(86_400)), "24h");
    }

    /// Text a client might send as a duration: numbers of every size and
    /// form, Go durations, and anything else.
    fn duration_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>().prop_map(|f| f.to_string()),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            (
                any::<u64>(),
                prop::sample::select(vec!["h", "m", "s", "ms", "us", "ns"])
            )
                .prop_map(|(n, unit)| format!("{n}{unit}")),
            "[0-9.e+-]{0,40}[hmsuµn]{0,3}",
            ".{0,40}",
        ]
    }

    const DURATIONS: [DurationRange; 4] = [
        DurationRange::STOP_TIMEOUT,
        DurationRange::CHECK_INTERVAL,
        DurationRange::CHECK_TIMEOUT,
        DurationRange::CHECK_GRACE_PERIOD,
    ];

    const NUMBERS: [NumberRange; 8] = [
        NumberRange::WAIT_TIMEOUT_SECS,
        NumberRange::EXEC_TIMEOUT_SECS,
        NumberRange::LEASE_TTL_SECS,
        NumberRange::PORT,
        NumberRange::CONCURRENCY_LIMIT,
        NumberRange::MIN_MACHINES_RUNNING,
        NumberRange::IDLE_TIMEOUT_SECS,
        NumberRange::FILE_MODE,
    ];

    #[test]
    fn security_text_limits_name_the_field_and_the_length_not_the_text() {
        let long = "x".repeat(64);
        let err = TextLimit::NAME.check("org_slug", &long).unwrap_err();
        assert_eq!(err, "org_slug is 64 bytes long: allowed are 1 to 63 bytes");
        assert!(TextLimit::NAME.check("name", &long[..63]).is_ok());
        assert!(TextLimit::NAME.check("name", "").is_err());
        assert!(TextLimit::METADATA_VALUE
            .check("config.metadata.k", "")
            .is_ok());
        let err = TextLimit::METADATA_KEY
            .check("config.metadata key", "a\u{0}b")
            .unwrap_err();
        assert!(err.contains("control character"), "{err}");
    }

    proptest! {
        /// No text panics the parser, and every duration range either
        /// accepts a value inside it or refuses naming field and range.
        #[test]
        fn security_durations_never_panic_and_stay_in_range(text in duration_text()) {
            let parsed = crate::parse_duration(&text);
            for range in DURATIONS {
                match range.parse("field", &text) {
                    Ok(duration) => {
                        prop_assert_eq!(Some(duration), parsed);
                        prop_assert!(duration >= range.min && duration <= range.max);
                    }
                    Err(message) => {
                        prop_assert!(message.starts_with("field = "), "{}", message);
                        prop_assert!(message.contains(&human(range.max)), "{}", message);
                    }
                }
            }
        }

        /// Every number range accepts exactly its values and names itself.
        #[test]
        fn security_numbers_stay_in_range(value in any::<i64>(), unsigned in any::<u64>()) {
            for range in NUMBERS {
                let inside = value >= range.min && value <= range.max;
                match range.check("field", value) {
                    Ok(v) => prop_assert!(inside && v == value),
                    Err(message) => {
                        prop_assert!(!inside);
                        let allowed = format!("allowed values are {} to {}", range.min, range.max);
                        prop_assert!(message.contains(&allowed), "{}", message);
                    }
                }
                let fits = i64::try_from(unsigned).is_ok_and(|v| v >= range.min && v <= range.max);
                match range.check_unsigned("field", unsigned) {
                    Ok(v) => prop_assert!(fits && v == unsigned),
                    Err(message) => {
                        prop_assert!(!fits);
                        prop_assert!(message.contains(&unsigned.to_string()), "{}", message);
                    }
                }
            }
        }
    }
}
