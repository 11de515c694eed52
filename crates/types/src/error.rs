use serde::{Deserialize, Serialize};
use std::fmt;

/// `ErrorResponse`: every 4xx/5xx body.
///
/// `missing` is roost's extension: when a request failed because something
/// it names does not exist, it says what, so each client can tell its user
/// how to get it in its own terms (the CLI names its command, the MCP
/// server its tool). Fly clients read `error` and ignore the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Missing>,
}

/// Something a request depends on that is not there.
///
/// Its `Display` is the neutral sentence every front end shows; it names no
/// command or tool, because which one applies depends on who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Missing {
    /// The app in the path does not exist.
    App { app: String },
    /// The machine config names no image.
    ImageUnnamed,
    /// The machine config names an image the image store does not hold.
    Image {
        reference: String,
        /// The references the store does hold.
        available: Vec<String>,
    },
    /// The bucket in the path is not one of the app's.
    Bucket { app: String, bucket: String },
    /// The snapshot a volume request names is not one of the app's.
    Snapshot { app: String, snapshot: String },
}

impl Missing {
    /// Whether the missing thing is the resource the request's path names
    /// (404), rather than something its body refers to (400).
    pub fn is_path_resource(&self) -> bool {
        matches!(self, Missing::App { .. } | Missing::Bucket { .. })
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::App { app } => write!(f, "app '{app}' not found"),
            Missing::ImageUnnamed => write!(
                f,
                "config.image is required: name an image from roost's image store (e.g. \"busybox:latest\") or a registry reference"
            ),
            Missing::Image {
                reference,
                available,
            } => {
                let available = if available.is_empty() {
                    "none yet".to_string()
                } else {
                    available.join(", ")
                };
                write!(
                    f,
                    "image '{reference}' is not in roost's image store (available: {available}): \
                     add it to the store, or name its registry (HOST[:PORT]/REPO:TAG) so roost pulls it"
                )
            }
            Missing::Bucket { app, bucket } => write!(f, "app '{app}' has no bucket '{bucket}'"),
            Missing::Snapshot { app, snapshot } => {
                write!(f, "snapshot_id {snapshot:?} is not a snapshot of app '{app}'")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_without_missing_has_the_fly_shape() {
        let body = ErrorResponse {
            error: "no".into(),
            missing: None,
        };
        assert_eq!(serde_json::to_string(&body).unwrap(), r#"{"error":"no"}"#);
        let parsed: ErrorResponse = serde_json::from_str(r#"{"error":"no"}"#).unwrap();
        assert_eq!(parsed, body);
    }

    #[test]
    fn missing_round_trips_tagged_by_kind() {
        let body = ErrorResponse {
            error: "app 'a' not found".into(),
            missing: Some(Missing::App { app: "a".into() }),
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json["missing"],
            serde_json::json!({"kind": "app", "app": "a"})
        );
        assert_eq!(serde_json::from_value::<ErrorResponse>(json).unwrap(), body);
    }

    #[test]
    fn messages_name_no_command() {
        let all = [
            Missing::App { app: "a".into() },
            Missing::ImageUnnamed,
            Missing::Image {
                reference: "x:1".into(),
                available: vec![],
            },
            Missing::Bucket {
                app: "a".into(),
                bucket: "b".into(),
            },
            Missing::Snapshot {
                app: "a".into(),
                snapshot: "s".into(),
            },
        ];
        for missing in all {
            let text = missing.to_string();
            assert!(!text.contains('`'), "{text}");
            for command in [
                "roost apps",
                "roost image",
                "roost storage",
                "roost volumes",
            ] {
                assert!(!text.contains(command), "{text}");
            }
        }
    }
}
