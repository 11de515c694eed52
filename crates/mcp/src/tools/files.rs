//! File tools: read, write and list files inside a machine, started or
//! stopped.

use super::reply::{count, reply, text};
use super::Tools;
use base64::Engine;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use roost_machines::MachineError;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadFileArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// Absolute path inside the machine, e.g. "/app/main.py".
    path: String,
    /// Byte offset to start reading at. Default 0.
    #[serde(default)]
    offset: u64,
    /// Most bytes to return, 1 to 1048576 (1 MiB). Default 1048576.
    limit: Option<u64>,
}

/// How `content` of write_file is encoded.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
enum Encoding {
    /// The content is the file's text.
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    /// The content is standard base64 of the file's bytes (for binary files).
    #[serde(rename = "base64")]
    Base64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WriteFileArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// Absolute path inside the machine, e.g. "/app/main.py". Missing parent directories
    /// are created (mode 755).
    path: String,
    /// The whole new content of the file (it replaces any existing content), at most 2 MiB.
    content: String,
    /// Encoding of content: "utf-8" (default) or "base64".
    #[serde(default)]
    encoding: Encoding,
    /// Permission bits in octal, e.g. "644" or "755" for an executable script. Default "644".
    mode: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListDirArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// Absolute directory path inside the machine. Default "/".
    path: Option<String>,
}

/// Parses permission bits written in octal ("644", "0755", "0o600").
fn parse_mode(mode: Option<&str>) -> Result<u32, MachineError> {
    let Some(text) = mode else { return Ok(0o644) };
    let digits = text.trim().trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| {
            MachineError::Invalid(format!(
                "mode {text:?} is invalid: give permission bits in octal, such as \"644\" or \"755\""
            ))
        })
}

/// `data` as JSON text fields: UTF-8 when it is text (a character cut by
/// the read limit is left for the next read), base64 otherwise.
fn encode_content(data: &[u8]) -> (&'static str, String, usize) {
    match std::str::from_utf8(data) {
        Ok(text) => ("utf-8", text.to_string(), data.len()),
        Err(err) if err.error_len().is_none() && err.valid_up_to() > 0 => {
            let valid = &data[..err.valid_up_to()];
            (
                "utf-8",
                String::from_utf8_lossy(valid).into_owned(),
                valid.len(),
            )
        }
        Err(_) => (
            "base64",
            base64::engine::general_purpose::STANDARD.encode(data),
            data.len(),
        ),
    }
}

#[tool_router(router = files_router, vis = "pub(super)")]
impl Tools {
    /// Read a file inside a machine, started or stopped. At most 1 MiB per call: for larger
    /// files call again with offset = next_offset. Returns {"path", "size" (whole file,
    /// bytes), "offset", "bytes", "eof", "next_offset" (when not eof), "encoding" ("utf-8",
    /// or "base64" for binary data), "content"}. Paths resolve inside the machine only.
    #[tool(annotations(read_only_hint = true))]
    async fn read_file(&self, Parameters(args): Parameters<ReadFileArgs>) -> CallToolResult {
        let result = self
            .machines
            .read_file(
                &args.app,
                &args.machine_id,
                &args.path,
                args.offset,
                args.limit,
            )
            .await
            .map(|file| {
                let (encoding, content, bytes) = encode_content(&file.data);
                let next = file.offset + bytes as u64;
                let eof = next >= file.size;
                json!({
                    "path": args.path, "size": file.size, "offset": file.offset, "bytes": bytes,
                    "eof": eof, "next_offset": (!eof).then_some(next),
                    "encoding": encoding, "content": content,
                })
            });
        reply(result, |v| {
            format!(
                "read {} of {} bytes of {}",
                v["bytes"],
                v["size"],
                text(&v["path"])
            )
        })
    }

    /// Write a whole file inside a machine, started or stopped (a stopped machine keeps it
    /// when started again). Replaces existing content, creates missing parent directories.
    /// Returns {"path", "bytes", "mode"}.
    #[tool(annotations(idempotent_hint = true))]
    async fn write_file(&self, Parameters(args): Parameters<WriteFileArgs>) -> CallToolResult {
        let result = async {
            let mode = parse_mode(args.mode.as_deref())?;
            let content = match args.encoding {
                Encoding::Utf8 => args.content.into_bytes(),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(args.content.trim())
                    .map_err(|err| {
                        MachineError::Invalid(format!(
                            "content is not valid base64 ({err}); send text with encoding \"utf-8\" or standard base64"
                        ))
                    })?,
            };
            let bytes = content.len();
            self.machines
                .write_file(&args.app, &args.machine_id, &args.path, content, mode)
                .await?;
            Ok(json!({"path": args.path, "bytes": bytes, "mode": format!("{mode:o}")}))
        }
        .await;
        reply(result, |v| {
            format!("wrote {} bytes to {}", v["bytes"], text(&v["path"]))
        })
    }

    /// List a directory inside a machine, started or stopped, sorted by name (at most 1000
    /// entries). Symlinks are listed, not followed. Returns {"path", "entries": [{"name",
    /// "kind" (file, dir, symlink or other), "size" (bytes), "mode" (octal), "link_target"}],
    /// "truncated"}.
    #[tool(annotations(read_only_hint = true))]
    async fn list_dir(&self, Parameters(args): Parameters<ListDirArgs>) -> CallToolResult {
        let path = args.path.unwrap_or_else(|| "/".into());
        let result = self
            .machines
            .list_dir(&args.app, &args.machine_id, &path)
            .await
            .map(|listing| {
                let entries: Vec<Value> = listing
                    .entries
                    .iter()
                    .map(|e| {
                        json!({
                            "name": e.name, "kind": e.kind, "size": e.size,
                            "mode": format!("{:o}", e.mode), "link_target": e.link_target,
                        })
                    })
                    .collect();
                json!({"path": path, "entries": entries, "truncated": listing.truncated})
            });
        reply(result, |v| {
            format!("{} entries in {}", count(&v["entries"]), text(&v["path"]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode(None).unwrap(), 0o644);
        for (text, mode) in [("755", 0o755), ("0600", 0o600), ("0o4755", 0o4755)] {
            assert_eq!(parse_mode(Some(text)).unwrap(), mode, "{text}");
        }
        for bad in ["999", "rwxr-xr-x", "", "17777", "-1"] {
            assert!(parse_mode(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_is_text_when_it_can_be() {
        assert_eq!(encode_content(b"hi\n"), ("utf-8", "hi\n".into(), 3));
        // A character cut by the read limit is left for the next read.
        assert_eq!(encode_content("é".as_bytes()[..1].as_ref()).0, "base64");
        assert_eq!(encode_content(b"a\xc3"), ("utf-8", "a".into(), 1));
        assert_eq!(encode_content(b"\x00\xff"), ("base64", "AP8=".into(), 2));
    }
}
