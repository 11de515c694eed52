//! The `fly-replay` response header: a machine asks the proxy to deliver
//! the request somewhere else instead of answering it.
//!
//! Fields (`;`-separated `key=value`, values optionally quoted):
//! `instance` (that machine or 503), `prefer_instance` (that machine if it
//! can take it), `app` (another app on this roost), `elsewhere=true` (any
//! machine but the one that answered), `state` (passed on to the target in
//! `fly-replay-src`), `region` (accepted; one host has one region, so it
//! does not change where the request goes). Unknown fields are ignored, as
//! Fly's proxy ignores fields it does not know.

use crate::route::{InstanceMode, Target};

/// A parsed `fly-replay` value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Replay {
    pub app: Option<String>,
    pub instance: Option<String>,
    pub prefer_instance: Option<String>,
    pub elsewhere: bool,
    pub state: Option<String>,
}

impl Replay {
    pub(crate) fn parse(value: &str) -> Result<Replay, String> {
        let mut replay = Replay::default();
        for field in value.split(';') {
            let field = field.trim();
            if field.is_empty() {
                continue;
            }
            let (key, raw) = field
                .split_once('=')
                .ok_or_else(|| format!("field {field:?} is not key=value"))?;
            let val = raw.trim().trim_matches('"').to_string();
            match key.trim().to_ascii_lowercase().as_str() {
                "app" => replay.app = Some(val).filter(|v| !v.is_empty()),
                "instance" => replay.instance = Some(val).filter(|v| !v.is_empty()),
                "prefer_instance" => replay.prefer_instance = Some(val).filter(|v| !v.is_empty()),
                "elsewhere" => {
                    replay.elsewhere = match val.to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        other => return Err(format!("elsewhere={other:?} is not true or false")),
                    }
                }
                "state" => replay.state = Some(val),
                _ => {}
            }
        }
        Ok(replay)
    }

    /// Where the replayed request goes, given the machine that answered.
    pub(crate) fn target(&self, answered_by: &str) -> Target {
        if let Some(id) = &self.instance {
            return Target::Instance {
                id: id.clone(),
                mode: InstanceMode::Force,
            };
        }
        if let Some(id) = &self.prefer_instance {
            return Target::Instance {
                id: id.clone(),
                mode: InstanceMode::Prefer,
            };
        }
        Target::Any {
            exclude: self.elsewhere.then(|| answered_by.to_string()),
        }
    }

    /// The `fly-replay-src` header the target sees: who replayed, from
    /// which region, when (microseconds since the epoch), and the state.
    pub(crate) fn source_header(&self, answered_by: &str, region: &str) -> String {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let mut value = format!("instance={answered_by};region={region};t={micros}");
        if let Some(state) = &self.state {
            value.push_str(";state=");
            value.push_str(state);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fly_fields() {
        let r = Replay::parse("app=other; instance=\"abc\";state=s1;region=sjc;elsewhere=true")
            .unwrap();
        assert_eq!(r.app.as_deref(), Some("other"));
        assert_eq!(r.instance.as_deref(), Some("abc"));
        assert_eq!(r.state.as_deref(), Some("s1"));
        assert!(r.elsewhere);
        assert_eq!(
            r.target("m1"),
            Target::Instance {
                id: "abc".into(),
                mode: InstanceMode::Force
            }
        );
        let r = Replay::parse("elsewhere=true").unwrap();
        assert_eq!(
            r.target("m1"),
            Target::Any {
                exclude: Some("m1".into())
            }
        );
        assert!(Replay::parse("instance").is_err());
        assert!(Replay::parse("elsewhere=maybe").is_err());
        let src = r.source_header("m1", "local");
        assert!(src.starts_with("instance=m1;region=local;t="), "{src}");
    }
}
