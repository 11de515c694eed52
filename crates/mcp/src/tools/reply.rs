//! Tool results and tool errors, shared by every tool family: a one-line
//! summary plus structured JSON, or an error whose text names the next
//! step.

use rmcp::model::{CallToolResult, ContentBlock, Tool};
use roost_machines::{MachineError, Missing};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// Tool texts come from doc comments wrapped at 100 columns; an LLM reads
/// them as prose, so their line breaks become spaces.
pub(super) fn unwrap_lines(tool: &mut Tool) {
    fn unwrap_descriptions(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    match value {
                        Value::String(text) if key == "description" => {
                            *text = text.replace('\n', " ");
                        }
                        other => unwrap_descriptions(other),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
            _ => {}
        }
    }
    if let Some(description) = &tool.description {
        tool.description = Some(description.replace('\n', " ").into());
    }
    let mut schema = Value::Object(tool.input_schema.as_ref().clone());
    unwrap_descriptions(&mut schema);
    if let Value::Object(schema) = schema {
        tool.input_schema = Arc::new(schema);
    }
}

/// What a tool works on; it decides the advice after a conflict.
#[derive(Debug, Clone, Copy)]
pub(super) enum Subject {
    Machine,
    Bucket,
    Volume,
}

/// What to do after an error, by kind and subject; the error's own
/// message says what was wrong.
fn hint(err: &MachineError, subject: Subject) -> Cow<'static, str> {
    let advice = match err {
        MachineError::Missing(missing) => return missing_hint(missing).into(),
        MachineError::Invalid(_) => "Fix the arguments and call the tool again.",
        MachineError::Forbidden(_) => {
            "The token this MCP client uses lacks that right; calling again with it will fail the same way."
        }
        MachineError::NotFound(_) => {
            "list_apps, list_machines, list_images, list_dir, list_storage, list_volumes and list_volume_snapshots show what exists."
        }
        MachineError::Conflict(_) => match subject {
            Subject::Machine => {
                "Check the machine's state with get_machine: call start_machine first if it is stopped or created, or wait_machine while an operation is in progress."
            }
            Subject::Bucket => {
                "Bucket names are unique on the host: choose another name, or call list_storage to see the existing buckets."
            }
            Subject::Volume => {
                "Check the volume with get_volume: only a volume in state created can be changed (retry when an operation on it ends), and one mounted by a machine (attached_machine_id) is freed by destroying that machine."
            }
        },
        MachineError::LeaseMismatch(_) => {
            "Another client holds the machine's lease; wait until it expires and retry."
        }
        MachineError::Timeout(_) => {
            "The machine may still get there: call get_machine or wait_machine again."
        }
        MachineError::Internal(_)
            | MachineError::PrivateNetwork(_)
            | MachineError::NetnsDirTaken(_) => {
            "roost failed on the host; retrying may help, otherwise ask its operator to check roost's log."
        }
        MachineError::Upstream(_) => {
            "The image registry was unreachable or answered wrongly; check the reference and credentials, then retry."
        }
    };
    advice.into()
}

/// The tool call that provides what a request found missing.
fn missing_hint(missing: &Missing) -> String {
    match missing {
        Missing::App { app } => format!("Create it with create_app (name \"{app}\"), then call again."),
        Missing::ImageUnnamed => {
            "Pass config.image: list_images shows the stored images, or give a registry reference.".into()
        }
        Missing::Image { .. } => {
            "Call pull_image with its registry reference (or pass that reference as the image), then call again.".into()
        }
        Missing::Bucket { app, .. } => {
            format!("list_storage (app \"{app}\") shows the app's buckets.")
        }
        Missing::Snapshot { .. } => {
            "list_volume_snapshots shows a volume's snapshots; pass one of their ids.".into()
        }
    }
}

/// A tool error whose text says what went wrong and what to do.
fn tool_error(message: impl std::fmt::Display, hint: &str) -> CallToolResult {
    let message = message.to_string();
    CallToolResult::error(vec![ContentBlock::text(format!(
        "{}. {hint}",
        message.trim_end_matches('.')
    ))])
}

/// A JSON string field as plain text, for summaries.
pub(super) fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The length of a JSON array field, for summaries.
pub(super) fn count(value: &Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

/// A tool result of a machine tool: see [`reply_on`].
pub(super) fn reply<T: Serialize>(
    result: Result<T, MachineError>,
    summary: impl FnOnce(&T) -> String,
) -> CallToolResult {
    reply_on(Subject::Machine, result, summary)
}

/// A tool result: the structured `value` (a JSON object) and, as text for
/// clients that only show text, a one-line summary followed by the same
/// JSON; or a tool error with the hint for `subject`.
pub(super) fn reply_on<T: Serialize>(
    subject: Subject,
    result: Result<T, MachineError>,
    summary: impl FnOnce(&T) -> String,
) -> CallToolResult {
    let value = match result {
        Ok(value) => value,
        Err(err) => return tool_error(&err, &hint(&err, subject)),
    };
    let text = summary(&value);
    match serde_json::to_value(&value) {
        Ok(structured) => {
            let mut result =
                CallToolResult::success(vec![ContentBlock::text(format!("{text}\n{structured}"))]);
            result.structured_content = Some(structured);
            result
        }
        Err(err) => tool_error(
            format!("cannot encode the result: {err}"),
            &hint(&MachineError::Internal(String::new()), subject),
        ),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_texts_are_prose_and_errors_name_the_next_step() {
        let mut tool = Tool::new(
            "t",
            "first line\nsecond",
            Arc::new(
                json!({"properties": {"a": {"description": "x\ny"}}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        );
        unwrap_lines(&mut tool);
        assert_eq!(tool.description.as_deref(), Some("first line second"));
        assert_eq!(tool.input_schema["properties"]["a"]["description"], "x y");
        let err = MachineError::Conflict("machine m is stopped.".into());
        let result = tool_error(&err, &hint(&err, Subject::Machine));
        assert_eq!(result.is_error, Some(true));
        let text = result.content[0].as_text().map(|t| t.text.clone());
        assert!(text.is_some_and(
            |t| t.starts_with("machine m is stopped. Check") && t.contains("start_machine")
        ));
    }

    #[test]
    fn conflict_hints_depend_on_the_subject() {
        let err = MachineError::Conflict("volume v is extending".into());
        assert!(hint(&err, Subject::Volume).contains("get_volume"));
        assert!(hint(&err, Subject::Bucket).contains("list_storage"));
        let missing = MachineError::NotFound("volume v not found".into());
        assert!(hint(&missing, Subject::Machine).contains("list_volumes"));
    }

    #[test]
    fn a_refused_call_is_a_tool_error_naming_the_right() {
        let caller = roost_machines::Caller::new(
            roost_machines::Who::Mcp { session: None },
            roost_machines::Rights::NONE,
        );
        let refused = caller
            .may(
                roost_machines::Right::Exec,
                roost_machines::Target::App("web"),
            )
            .unwrap_err();
        let err = MachineError::Forbidden(refused);
        let result = tool_error(&err, &hint(&err, Subject::Machine));
        assert_eq!(result.is_error, Some(true));
        let text = result.content[0]
            .as_text()
            .map(|t| t.text.clone())
            .unwrap_or_default();
        assert!(
            text.starts_with(
                "not allowed: this MCP request lacks the 'exec' right on app 'web'. The token"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_missing_app_is_answered_with_the_tool_that_creates_it() {
        let err = MachineError::Missing(Missing::App { app: "web".into() });
        let result = tool_error(&err, &hint(&err, Subject::Machine));
        let text = result.content[0]
            .as_text()
            .map(|t| t.text.clone())
            .unwrap_or_default();
        assert_eq!(
            text,
            "app 'web' not found. Create it with create_app (name \"web\"), then call again."
        );
    }
}
