//! The MCP tools: one per platform operation, each a thin translation of
//! its arguments into a [`Machines`] call and of the outcome into a tool
//! result. Descriptions and argument docs are what an LLM reads to decide
//! which tool to call and how, so they state units, defaults and limits.

use base64::Engine;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::{tool, tool_handler, tool_router, ServerHandler};
use roost_machines::{MachineError, Machines};
use roost_types::{
    CreateAppRequest, CreateMachineRequest, CreateVolumeRequest, ExecRequest, ExtendVolumeRequest,
    Machine, MachineConfig, MachineGuest, MachineInit, MachineMount, MachineState, RegistryAuth,
    StopRequest, Volume,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the server tells a client about itself at initialization.
const INSTRUCTIONS: &str = "roost runs Linux machines (OCI containers) for you. \
A machine belongs to an app and runs an image from roost's local image store. \
Typical flow: list_images to see what can run; create_app once; run_machine with a \
long-running command such as [\"sleep\", \"infinity\"] so you can exec into it; exec, \
write_file, read_file and list_dir to build it up; stop_machine when idle (its files \
persist and it costs nothing); start_machine to resume in milliseconds. File tools \
also work on stopped machines. Every machine tool needs the app name and the \
machine_id (14 hex characters) returned by run_machine or list_machines. Data that \
must outlive a machine goes on a volume: create_volume, then run_machine with mounts; \
create_volume_snapshot before risky changes. set_secrets gives an app's machines \
environment variables (API keys, passwords) at their next start without showing them \
in any listing.";

/// The MCP server: the tool router over one [`Machines`] service.
#[derive(Clone)]
pub struct Tools {
    machines: Machines,
    tool_router: ToolRouter<Tools>,
}

/// A machine of an app.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MachineArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id: 14 lowercase hex characters, as returned by run_machine or list_machines.
    machine_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AppArgs {
    /// App name.
    app: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateAppArgs {
    /// New app's name: 1-63 lowercase letters, digits and '-', not starting or ending with '-'.
    name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RunMachineArgs {
    /// App to create the machine in (see list_apps / create_app).
    app: String,
    /// Image reference from roost's image store, e.g. "busybox:latest" (see list_images).
    image: String,
    /// Command (argv) to run as the machine's main process instead of the image's default.
    /// The machine stops when it exits, so use a long-running command such as
    /// ["sleep", "infinity"] for a machine you want to exec into.
    #[serde(default)]
    command: Vec<String>,
    /// Environment variables for the main process and for exec, e.g. {"PORT": "8080"}.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Human-readable machine name. Default: "<app>-<first 6 id characters>".
    name: Option<String>,
    /// CPU share, in CPUs (1 to the host's CPU count). Default 1.
    cpus: Option<i64>,
    /// Memory limit in MiB (32 to the host's memory). Default 256.
    memory_mb: Option<i64>,
    /// Start the machine after creating it. Default true; false only creates it (state
    /// "created"), to be started later with start_machine.
    start: Option<bool>,
    /// Volumes to mount, e.g. [{"volume": "vol_...", "path": "/data"}] (see create_volume).
    /// Files under the path outlive the machine. A volume serves one machine at a time.
    /// read_file, write_file and list_dir reach files on volumes too.
    #[serde(default)]
    mounts: Vec<MountArgs>,
}

/// A volume mounted into a machine.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MountArgs {
    /// Volume id ("vol_...") of a volume of the same app, in state "created".
    volume: String,
    /// Absolute path inside the machine, e.g. "/data"; not "/" nor inside a system directory
    /// (/etc, /usr, /proc, /sys, /dev, ...).
    path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StopMachineArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// Signal to stop the main process with, e.g. "SIGTERM" or "SIGINT". Default: the
    /// machine's stop_config signal, else SIGTERM.
    signal: Option<String>,
    /// Seconds to wait after the signal before killing the process. Default 5.
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DestroyMachineArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// Destroy even if the machine is running (it is killed). Default false: a running
    /// machine must be stopped first.
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateStorageArgs {
    /// App that will own the bucket (see list_apps / create_app).
    app: String,
    /// Bucket name, unique on this host: 3-63 lowercase letters, digits, '-' and '.', starting
    /// and ending with a letter or digit. Default: "<app>-bucket".
    name: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListStorageArgs {
    /// Only this app's buckets. Default: every bucket on the host.
    app: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DestroyStorageArgs {
    /// App that owns the bucket.
    app: String,
    /// Bucket name, as returned by create_storage or list_storage.
    name: String,
}

/// A volume of an app.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct VolumeArgs {
    /// App the volume belongs to.
    app: String,
    /// Volume id: "vol_" and 16 lowercase letters or digits, as returned by create_volume or
    /// list_volumes.
    volume_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateVolumeArgs {
    /// App that will own the volume (see list_apps / create_app); only its machines can mount it.
    app: String,
    /// Volume name: 1-30 lowercase letters, digits and '_', e.g. "data". Names need not be
    /// unique; the returned id identifies the volume.
    name: String,
    /// Size in GB (GiB), from 1 to this host's limit. Default: 1 for a new volume, the source's
    /// size when restoring or forking (which is also the least allowed then).
    size_gb: Option<u64>,
    /// Restore: fill the new volume from this snapshot ("vs_...", see
    /// list_volume_snapshots). Omit for an empty volume.
    snapshot_id: Option<String>,
    /// Fork: the new volume starts as a copy of this volume ("vol_...") of the same app, taken
    /// now (consistent even while a machine writes to it). Omit for an empty volume; not
    /// together with snapshot_id.
    source_volume_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExtendVolumeArgs {
    /// App the volume belongs to.
    app: String,
    /// Volume id ("vol_...").
    volume_id: String,
    /// The new size in GB (GiB): larger than the current size_gb (volumes only grow), at most
    /// this host's limit.
    size_gb: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetSecretsArgs {
    /// App whose machines get the secrets.
    app: String,
    /// Secrets to set, NAME -> value, e.g. {"API_KEY": "...", "DB_PASSWORD": "..."}. Names
    /// are 1-256 letters, digits and '_', not starting with a digit or FLY_ (each becomes an
    /// environment variable); values are strings up to 64 KiB without NUL bytes. An existing
    /// name gets the new value; names not given are kept.
    #[schemars(with = "BTreeMap<String, String>")]
    values: SecretValues,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UnsetSecretsArgs {
    /// App the secrets belong to.
    app: String,
    /// Names of the secrets to remove, e.g. ["API_KEY"]. Names that are not set are ignored.
    names: Vec<String>,
}

/// Secret values by name, as set_secrets receives them. Parsed by hand
/// because serde's messages quote the offending input, which here may be a
/// secret: errors name the secret, never its value. Its `Debug` shows
/// names only.
struct SecretValues(BTreeMap<String, String>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl<'de> Deserialize<'de> for SecretValues {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let Value::Object(map) = Value::deserialize(deserializer)? else {
            return Err(D::Error::custom(
                "values must be an object mapping each secret's name to its value, e.g. {\"API_KEY\": \"...\"}",
            ));
        };
        map.into_iter()
            .map(|(name, value)| match value {
                Value::String(value) => Ok((name, value)),
                _ => Err(D::Error::custom(format!(
                    "the value of secret {name:?} must be a string"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(SecretValues)
    }
}

/// States a machine can be waited for.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum WaitState {
    Started,
    Stopped,
    Suspended,
    Destroyed,
}

impl From<WaitState> for MachineState {
    fn from(state: WaitState) -> MachineState {
        match state {
            WaitState::Started => MachineState::Started,
            WaitState::Stopped => MachineState::Stopped,
            WaitState::Suspended => MachineState::Suspended,
            WaitState::Destroyed => MachineState::Destroyed,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitMachineArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// State to wait for.
    state: WaitState,
    /// Seconds to wait at most, 1 to 300. Default 60.
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExecArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters) of a started machine.
    machine_id: String,
    /// Command as an argv array, run without a shell, e.g. ["ls", "-la", "/app"].
    /// For pipes, redirections or several commands use ["sh", "-c", "cd /app && make 2>&1"].
    command: Vec<String>,
    /// Seconds before the command is killed, 1 to 300. Default 30.
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TailLogsArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// Number of most recent lines to return, 1 to 2000. Default 100.
    lines: Option<usize>,
}

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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PullImageArgs {
    /// Image reference with its registry host, e.g. "registry.example.com:5000/team/app:1.2"
    /// or "registry.example.com/app@sha256:<digest>". Without a tag, "latest".
    image: String,
    /// Registry user name, for registries that need a login. Omit for anonymous pulls.
    username: Option<String>,
    /// Registry password or token; required with username.
    password: Option<String>,
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

/// The fields of a machine a robot needs to act on it.
#[derive(Debug, Serialize)]
struct MachineSummary {
    id: String,
    name: String,
    state: MachineState,
    image: String,
    region: String,
    instance_id: String,
    created_at: String,
    updated_at: String,
}

impl From<&Machine> for MachineSummary {
    fn from(m: &Machine) -> MachineSummary {
        MachineSummary {
            id: m.id.clone(),
            name: m.name.clone(),
            state: m.state,
            image: m.config.image.clone(),
            region: m.region.clone(),
            instance_id: m.instance_id.clone(),
            created_at: m.created_at.clone(),
            updated_at: m.updated_at.clone(),
        }
    }
}

/// The fields of a volume a robot needs to use it.
#[derive(Debug, Serialize)]
struct VolumeSummary {
    id: String,
    name: String,
    state: String,
    size_gb: u64,
    /// Bytes in use and still available, from the filesystem (0 while it is being built).
    used_bytes: u64,
    available_bytes: u64,
    fstype: String,
    attached_machine_id: Option<String>,
    snapshot_retention: u32,
    auto_backup_enabled: bool,
    created_at: String,
}

impl From<&Volume> for VolumeSummary {
    fn from(v: &Volume) -> VolumeSummary {
        VolumeSummary {
            id: v.id.clone(),
            name: v.name.clone(),
            state: v.state.clone(),
            size_gb: v.size_gb,
            used_bytes: v.blocks.saturating_sub(v.blocks_free) * v.block_size,
            available_bytes: v.blocks_avail * v.block_size,
            fstype: v.fstype.clone(),
            attached_machine_id: v.attached_machine_id.clone(),
            snapshot_retention: v.snapshot_retention,
            auto_backup_enabled: v.auto_backup_enabled,
            created_at: v.created_at.clone(),
        }
    }
}

/// Tool texts come from doc comments wrapped at 100 columns; an LLM reads
/// them as prose, so their line breaks become spaces.
fn unwrap_lines(tool: &mut Tool) {
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
enum Subject {
    Machine,
    Bucket,
    Volume,
}

/// What to do after an error, by kind and subject; the error's own
/// message says what was wrong.
fn hint(err: &MachineError, subject: Subject) -> &'static str {
    match err {
        MachineError::Invalid(_) => "Fix the arguments and call the tool again.",
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
        MachineError::Internal(_) => {
            "roost failed on the host; retrying may help, otherwise ask its operator to check roost's log."
        }
        MachineError::Upstream(_) => {
            "The image registry was unreachable or answered wrongly; check the reference and credentials, then retry."
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
fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The length of a JSON array field, for summaries.
fn count(value: &Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

/// A tool result of a machine tool: see [`reply_on`].
fn reply<T: Serialize>(
    result: Result<T, MachineError>,
    summary: impl FnOnce(&T) -> String,
) -> CallToolResult {
    reply_on(Subject::Machine, result, summary)
}

/// A tool result: the structured `value` (a JSON object) and, as text for
/// clients that only show text, a one-line summary followed by the same
/// JSON; or a tool error with the hint for `subject`.
fn reply_on<T: Serialize>(
    subject: Subject,
    result: Result<T, MachineError>,
    summary: impl FnOnce(&T) -> String,
) -> CallToolResult {
    let value = match result {
        Ok(value) => value,
        Err(err) => return tool_error(&err, hint(&err, subject)),
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
            hint(&MachineError::Internal(String::new()), subject),
        ),
    }
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

impl Tools {
    /// A machine's summary after an operation on it.
    fn summary(&self, app: &str, id: &str) -> Result<MachineSummary, MachineError> {
        Ok(MachineSummary::from(&self.machines.get_machine(app, id)?))
    }

    /// Sets (`Some`) and unsets (`None`) secrets; `summary` gets the number
    /// of secrets the app has after the change. Each value moves into the
    /// service's zeroizing wrapper, which wipes it when dropped.
    fn update_secrets(
        &self,
        app: &str,
        values: BTreeMap<String, Option<String>>,
        summary: impl FnOnce(usize) -> String,
    ) -> CallToolResult {
        let result = if values.is_empty() {
            Err(MachineError::Invalid(
                "no secrets given: set_secrets takes values {\"NAME\": \"value\"}, unset_secrets takes names [\"NAME\"]".into(),
            ))
        } else {
            let values = values
                .into_iter()
                .map(|(name, value)| (name, value.map(Into::into)))
                .collect();
            self.machines.update_secrets(app, values)
        };
        reply(result, |s| summary(s.secrets.len()))
    }
}

fn image_view(image: &roost_machines::Image) -> Value {
    json!({
        "reference": image.reference, "digest": image.digest, "size": image.size,
        "created_at": image.created_at,
    })
}

fn state_line(m: &MachineSummary) -> String {
    format!("machine {} ({}) is {}", m.id, m.name, m.state)
}

fn volume_line(v: &VolumeSummary) -> String {
    format!(
        "volume {} ({}) is {}, {} GB",
        v.id, v.name, v.state, v.size_gb
    )
}

#[tool_router]
impl Tools {
    pub fn new(machines: Machines) -> Tools {
        let mut tool_router = Self::tool_router();
        for route in tool_router.map.values_mut() {
            unwrap_lines(&mut route.attr);
        }
        Tools {
            machines,
            tool_router,
        }
    }

    /// List all apps with their number of machines. Use it to find the app name other tools
    /// need. Returns {"apps": [{"name", "machine_count"}]}.
    #[tool(annotations(read_only_hint = true))]
    async fn list_apps(&self) -> CallToolResult {
        let result = self.machines.list_apps(None).map(|list| {
            json!({"apps": list.apps.iter().map(|a| json!({"name": a.name, "machine_count": a.machine_count})).collect::<Vec<_>>()})
        });
        reply(result, |v| format!("{} apps", count(&v["apps"])))
    }

    /// Create an app: a named group of machines. Needed once before run_machine. Fails if the
    /// name is taken. Returns {"name", "organization"}.
    #[tool]
    async fn create_app(&self, Parameters(args): Parameters<CreateAppArgs>) -> CallToolResult {
        let result = self
            .machines
            .create_app(CreateAppRequest {
                app_name: args.name,
                org_slug: None,
                network: None,
            })
            .map(|app| json!({"name": app.name, "organization": app.organization.slug}));
        reply(result, |v| format!("created app {}", text(&v["name"])))
    }

    /// List the images in roost's local image store; run_machine's image must be one of them.
    /// Returns {"images": [{"reference", "digest", "size" (bytes), "created_at"}]}.
    #[tool(annotations(read_only_hint = true))]
    async fn list_images(&self) -> CallToolResult {
        let result = self
            .machines
            .list_images()
            .map(|images| json!({"images": images.iter().map(image_view).collect::<Vec<_>>()}));
        reply(result, |v| format!("{} images", count(&v["images"])))
    }

    /// Pull an image from an OCI/Docker registry into roost's image store, so run_machine can
    /// use it (layers already stored are not fetched again; a tag is re-resolved). Waits until
    /// the pull is complete, which can take minutes for large images. Returns {"reference",
    /// "digest", "size" (bytes), "created_at"}.
    #[tool(annotations(idempotent_hint = true, open_world_hint = true))]
    async fn pull_image(&self, Parameters(args): Parameters<PullImageArgs>) -> CallToolResult {
        let result = async {
            let auth = match (args.username, args.password) {
                (Some(username), Some(password)) => Some(RegistryAuth { username, password }),
                (None, None) => None,
                _ => {
                    return Err(MachineError::Invalid(
                        "give both username and password, or neither for an anonymous pull".into(),
                    ))
                }
            };
            let image = self.machines.pull_image(&args.image, auth, |_| {}).await?;
            Ok(image_view(&image))
        }
        .await;
        reply(result, |v| {
            format!("pulled {} ({})", text(&v["reference"]), text(&v["digest"]))
        })
    }

    /// Create a machine from an image and start it; returns once it is started (or created,
    /// with start=false). Creating does the slow work (preparing the image), so reuse machines:
    /// stop and start them instead of creating new ones. Returns the machine summary {"id",
    /// "name", "state", "image", "region", "instance_id", "created_at", "updated_at"}; keep
    /// "id" as machine_id for the other tools.
    #[tool]
    async fn run_machine(&self, Parameters(args): Parameters<RunMachineArgs>) -> CallToolResult {
        let guest = (args.cpus.is_some() || args.memory_mb.is_some()).then(|| MachineGuest {
            cpus: args.cpus,
            memory_mb: args.memory_mb,
            ..Default::default()
        });
        let init = (!args.command.is_empty()).then(|| MachineInit {
            cmd: args.command,
            ..Default::default()
        });
        let request = CreateMachineRequest {
            config: MachineConfig {
                image: args.image,
                env: args.env,
                guest,
                init,
                mounts: args
                    .mounts
                    .into_iter()
                    .map(|m| MachineMount {
                        volume: m.volume,
                        path: m.path,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            name: args.name,
            skip_launch: !args.start.unwrap_or(true),
            ..Default::default()
        };
        let result = self
            .machines
            .create_machine(&args.app, request)
            .await
            .map(|m| MachineSummary::from(&m));
        // A new machine conflicts only with a volume's other machine.
        reply_on(Subject::Volume, result, state_line)
    }

    /// List the machines of an app (destroyed ones excluded), with their states. Returns
    /// {"machines": [machine summary]}.
    #[tool(annotations(read_only_hint = true))]
    async fn list_machines(&self, Parameters(args): Parameters<AppArgs>) -> CallToolResult {
        let result = self
            .machines
            .list_machines(&args.app, &Default::default())
            .map(|machines| {
                json!({"machines": machines.iter().map(MachineSummary::from).collect::<Vec<_>>()})
            });
        reply(result, |v| {
            format!("{} machines in app {}", count(&v["machines"]), args.app)
        })
    }

    /// Get one machine in full: state, config (image, command, env, guest sizes) and its
    /// recent events (newest first), e.g. to see why it stopped or failed.
    #[tool(annotations(read_only_hint = true))]
    async fn get_machine(&self, Parameters(args): Parameters<MachineArgs>) -> CallToolResult {
        let result = self.machines.get_machine(&args.app, &args.machine_id);
        reply(result, |m| {
            format!("machine {} ({}) is {}", m.id, m.name, m.state)
        })
    }

    /// Start a created or stopped machine (fast: tens of milliseconds); its files are as it
    /// left them. Starting a started machine changes nothing. Returns the machine summary.
    #[tool(annotations(idempotent_hint = true))]
    async fn start_machine(&self, Parameters(args): Parameters<MachineArgs>) -> CallToolResult {
        let result = async {
            self.machines
                .start_machine(&args.app, &args.machine_id, None)
                .await?;
            self.summary(&args.app, &args.machine_id)
        }
        .await;
        reply(result, state_line)
    }

    /// Stop a started machine: its main process gets the stop signal, then is killed after
    /// the timeout. Files persist and a stopped machine uses no CPU or memory; start_machine
    /// resumes it. Stopping a stopped machine changes nothing. Returns the machine summary.
    #[tool(annotations(idempotent_hint = true))]
    async fn stop_machine(&self, Parameters(args): Parameters<StopMachineArgs>) -> CallToolResult {
        let request = StopRequest {
            signal: args.signal,
            timeout: args.timeout_seconds.map(|secs| format!("{secs}s")),
        };
        let result = async {
            self.machines
                .stop_machine(&args.app, &args.machine_id, request, None)
                .await?;
            self.summary(&args.app, &args.machine_id)
        }
        .await;
        reply(result, state_line)
    }

    /// Restart a started machine (stop, then start its main process again); files are kept.
    /// Use it after changing files the main process reads at startup. Returns the machine
    /// summary.
    #[tool]
    async fn restart_machine(&self, Parameters(args): Parameters<MachineArgs>) -> CallToolResult {
        let result = async {
            self.machines
                .restart_machine(&args.app, &args.machine_id, StopRequest::default(), None)
                .await?;
            self.summary(&args.app, &args.machine_id)
        }
        .await;
        reply(result, state_line)
    }

    /// Destroy a machine and delete its files for good. A running machine needs force=true
    /// (or stop_machine first). Returns {"id", "destroyed": true}.
    #[tool(annotations(destructive_hint = true))]
    async fn destroy_machine(
        &self,
        Parameters(args): Parameters<DestroyMachineArgs>,
    ) -> CallToolResult {
        let result = self
            .machines
            .destroy_machine(&args.app, &args.machine_id, args.force, None)
            .await
            .map(|()| json!({"id": args.machine_id, "destroyed": true}));
        reply(result, |v| format!("destroyed machine {}", text(&v["id"])))
    }

    /// Create an S3 bucket owned by an app, and the app's S3 key pair if it has none yet (one
    /// pair per app, reaching only that app's buckets). Machines of the app get the variables
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3, AWS_REGION and BUCKET_NAME
    /// (the app's oldest bucket) when they are next created or updated, so S3 clients and
    /// SDKs inside them work without configuration. Returns {"name", "app", "created_at",
    /// "endpoint", "region", "access_key_id", "secret_access_key"}; list_storage does not
    /// repeat the key pair.
    #[tool]
    async fn create_storage(
        &self,
        Parameters(args): Parameters<CreateStorageArgs>,
    ) -> CallToolResult {
        let result = self
            .machines
            .create_storage(&args.app, args.name.as_deref())
            .await;
        reply_on(Subject::Bucket, result, |v| {
            format!("created bucket {} for app {}", v.name, args.app)
        })
    }

    /// List S3 buckets, all or one app's, with the endpoint and region to reach them. Returns
    /// {"buckets": [{"name", "app", "created_at", "endpoint", "region"}]}.
    #[tool(annotations(read_only_hint = true))]
    async fn list_storage(&self, Parameters(args): Parameters<ListStorageArgs>) -> CallToolResult {
        let result = self
            .machines
            .list_storage(args.app.as_deref())
            .await
            .map(|buckets| json!({ "buckets": buckets }));
        reply_on(Subject::Bucket, result, |v| {
            format!("{} buckets", count(&v["buckets"]))
        })
    }

    /// Delete one of an app's S3 buckets together with every object in it, for good. With the
    /// app's last bucket its key pair goes too. Returns {"name", "destroyed": true}.
    #[tool(annotations(destructive_hint = true))]
    async fn destroy_storage(
        &self,
        Parameters(args): Parameters<DestroyStorageArgs>,
    ) -> CallToolResult {
        let result = self
            .machines
            .destroy_storage(&args.app, &args.name)
            .await
            .map(|()| json!({"name": args.name, "destroyed": true}));
        reply_on(Subject::Bucket, result, |v| {
            format!("destroyed bucket {}", text(&v["name"]))
        })
    }

    /// List an app's volumes (destroyed ones excluded). Returns {"volumes": [volume summary]};
    /// attached_machine_id names the machine that mounts a volume.
    #[tool(annotations(read_only_hint = true))]
    async fn list_volumes(&self, Parameters(args): Parameters<AppArgs>) -> CallToolResult {
        let result = self.machines.list_volumes(&args.app).map(|volumes| {
            json!({"volumes": volumes.iter().map(VolumeSummary::from).collect::<Vec<_>>()})
        });
        reply_on(Subject::Volume, result, |v| {
            format!("{} volumes in app {}", count(&v["volumes"]), args.app)
        })
    }

    /// Create a volume: a persistent filesystem of a fixed size that outlives machines. Empty,
    /// restored from a snapshot (snapshot_id) or forked from another volume
    /// (source_volume_id). Mount it with run_machine's mounts, e.g. [{"volume": id, "path":
    /// "/data"}]; one machine at a time. Returns the volume summary {"id", "name", "state",
    /// "size_gb", "used_bytes", "available_bytes", "fstype", "attached_machine_id",
    /// "snapshot_retention" (days), "auto_backup_enabled" (a snapshot a day), "created_at"};
    /// keep "id" as volume_id for the other volume tools.
    #[tool]
    async fn create_volume(
        &self,
        Parameters(args): Parameters<CreateVolumeArgs>,
    ) -> CallToolResult {
        let request = CreateVolumeRequest {
            name: Some(args.name),
            size_gb: args.size_gb,
            snapshot_id: args.snapshot_id,
            source_volume_id: args.source_volume_id,
            ..Default::default()
        };
        let result = self
            .machines
            .create_volume(&args.app, request)
            .await
            .map(|v| VolumeSummary::from(&v));
        reply_on(Subject::Volume, result, volume_line)
    }

    /// Get one volume: state, size, space used and available, and the machine mounting it.
    /// Returns the volume summary.
    #[tool(annotations(read_only_hint = true))]
    async fn get_volume(&self, Parameters(args): Parameters<VolumeArgs>) -> CallToolResult {
        let result = self
            .machines
            .get_volume(&args.app, &args.volume_id)
            .map(|v| VolumeSummary::from(&v));
        reply_on(Subject::Volume, result, volume_line)
    }

    /// Grow a volume to size_gb (volumes never shrink), online while a machine uses it, so
    /// df inside shows the new size at once. When the host cannot grow it online,
    /// "needs_restart" is true and the machine sees the new size after restart_machine.
    /// Returns {"volume": volume summary, "needs_restart"}.
    #[tool]
    async fn extend_volume(
        &self,
        Parameters(args): Parameters<ExtendVolumeArgs>,
    ) -> CallToolResult {
        let request = ExtendVolumeRequest {
            size_gb: args.size_gb,
        };
        let result = self
            .machines
            .extend_volume(&args.app, &args.volume_id, request)
            .await
            .map(|r| json!({"volume": VolumeSummary::from(&r.volume), "needs_restart": r.needs_restart}));
        reply_on(Subject::Volume, result, |v| {
            let restart = if v["needs_restart"] == true {
                "; its machine sees the new size after restart_machine"
            } else {
                ""
            };
            format!(
                "volume {} is now {} GB{restart}",
                text(&v["volume"]["id"]),
                v["volume"]["size_gb"]
            )
        })
    }

    /// Destroy a volume and its data for good. Refused while a machine mounts it: destroy that
    /// machine first. Its snapshots stay until their retention ends, so keep the volume_id to
    /// call list_volume_snapshots and restore one with create_volume. Returns {"id",
    /// "destroyed": true}.
    #[tool(annotations(destructive_hint = true))]
    async fn destroy_volume(&self, Parameters(args): Parameters<VolumeArgs>) -> CallToolResult {
        let result = self
            .machines
            .destroy_volume(&args.app, &args.volume_id)
            .await
            .map(|v| json!({"id": v.id, "destroyed": true}));
        reply_on(Subject::Volume, result, |v| {
            format!("destroyed volume {}", text(&v["id"]))
        })
    }

    /// List a volume's snapshots, oldest first (also of a destroyed volume, until their
    /// retention ends). Returns {"snapshots": [{"id", "created_at", "type" ("on-demand" or
    /// "scheduled"), "status", "size" (stored bytes, compressed), "volume_size" (bytes of the
    /// volume it restores), "digest"}]}; pass an id as create_volume's snapshot_id to restore.
    #[tool(annotations(read_only_hint = true))]
    async fn list_volume_snapshots(
        &self,
        Parameters(args): Parameters<VolumeArgs>,
    ) -> CallToolResult {
        let result = self
            .machines
            .list_volume_snapshots(&args.app, &args.volume_id)
            .map(|snapshots| json!({ "snapshots": snapshots }));
        reply_on(Subject::Volume, result, |v| {
            format!(
                "{} snapshots of volume {}",
                count(&v["snapshots"]),
                args.volume_id
            )
        })
    }

    /// Snapshot a volume now, e.g. before a risky change. Safe while a machine writes to it:
    /// the snapshot holds what a power cut at that instant would leave (every fsynced write).
    /// Snapshots are deduplicated, so frequent ones are cheap. Returns the snapshot {"id",
    /// "created_at", "type", "status", "size", "volume_size", "digest"}.
    #[tool]
    async fn create_volume_snapshot(
        &self,
        Parameters(args): Parameters<VolumeArgs>,
    ) -> CallToolResult {
        let result = self
            .machines
            .create_volume_snapshot(&args.app, &args.volume_id)
            .await;
        reply_on(Subject::Volume, result, |s| {
            format!("snapshot {} of volume {}", s.id, args.volume_id)
        })
    }

    /// List an app's secrets: names and digests, never values (a digest changes when the
    /// value does). Returns {"secrets": [{"name", "digest", "created_at", "updated_at"}]}.
    #[tool(annotations(read_only_hint = true))]
    async fn list_secrets(&self, Parameters(args): Parameters<AppArgs>) -> CallToolResult {
        let result = self.machines.list_secrets(&args.app);
        reply(result, |s| {
            format!("{} secrets in app {}", s.secrets.len(), args.app)
        })
    }

    /// Set app secrets: environment variables that every machine of the app gets, stored
    /// encrypted. Machines see them at their next start (run_machine, start_machine,
    /// restart_machine): a started machine, its exec commands included, keeps its old
    /// environment until restart_machine. Values are never shown again. Returns the app's secrets like list_secrets (names and digests).
    #[tool(annotations(idempotent_hint = true))]
    async fn set_secrets(&self, Parameters(args): Parameters<SetSecretsArgs>) -> CallToolResult {
        let count = args.values.0.len();
        let values = args
            .values
            .0
            .into_iter()
            .map(|(name, value)| (name, Some(value)))
            .collect();
        self.update_secrets(&args.app, values, |total| {
            format!(
                "set {count} secrets of app {} ({total} in all); machines see them at their next start",
                args.app
            )
        })
    }

    /// Remove app secrets by name. Machines lose the variables at their next start (exec
    /// commands at once). Returns the app's remaining secrets like list_secrets.
    #[tool(annotations(idempotent_hint = true, destructive_hint = true))]
    async fn unset_secrets(
        &self,
        Parameters(args): Parameters<UnsetSecretsArgs>,
    ) -> CallToolResult {
        let values = args.names.into_iter().map(|name| (name, None)).collect();
        self.update_secrets(&args.app, values, |total| {
            format!(
                "{total} secrets left in app {}; machines lose the removed ones at their next start",
                args.app
            )
        })
    }

    /// Wait until a machine reaches a state (started, stopped, suspended or destroyed), e.g.
    /// until a machine whose command runs to completion has stopped. Fails after
    /// timeout_seconds. Returns the machine summary.
    #[tool(annotations(read_only_hint = true))]
    async fn wait_machine(&self, Parameters(args): Parameters<WaitMachineArgs>) -> CallToolResult {
        let result = self
            .machines
            .wait_machine(
                &args.app,
                &args.machine_id,
                args.state.into(),
                args.timeout_seconds,
                None,
            )
            .await
            .map(|m| MachineSummary::from(&m));
        reply(result, state_line)
    }

    /// Run a command inside a started machine, with the main process's environment, user and
    /// working directory, and wait for it. Returns {"exit_code", "stdout", "stderr"}; a
    /// non-zero exit code is reported, not treated as a tool failure. The machine must be
    /// started (call start_machine first if it is stopped).
    #[tool]
    async fn exec(&self, Parameters(args): Parameters<ExecArgs>) -> CallToolResult {
        let request = ExecRequest {
            command: args.command,
            timeout: args.timeout_seconds,
            ..Default::default()
        };
        let result = self
            .machines
            .exec(&args.app, &args.machine_id, request)
            .await
            .map(|out| {
                json!({"exit_code": out.exit_code, "stdout": out.stdout, "stderr": out.stderr})
            });
        reply(result, |v| format!("exit code {}", v["exit_code"]))
    }

    /// Return the last lines of a machine's main process output (stdout and stderr
    /// interleaved, oldest first). Returns {"lines": text}.
    #[tool(annotations(read_only_hint = true))]
    async fn tail_logs(&self, Parameters(args): Parameters<TailLogsArgs>) -> CallToolResult {
        let result = self
            .machines
            .log_tail(&args.app, &args.machine_id, args.lines.unwrap_or(100))
            .map(|lines| json!({"lines": lines}));
        reply(result, |v| {
            format!(
                "{} log lines",
                v["lines"].as_str().map_or(0, |l| l.lines().count())
            )
        })
    }

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

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("roost", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
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
        let result = tool_error(&err, hint(&err, Subject::Machine));
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
    fn secret_values_never_appear_in_parse_errors() {
        let parse = |values: Value| {
            serde_json::from_value::<SetSecretsArgs>(json!({"app": "a", "values": values}))
        };
        let parsed = parse(json!({"API_KEY": "s3cret-1", "B": ""})).unwrap();
        assert_eq!(parsed.values.0["API_KEY"], "s3cret-1");
        assert!(!format!("{parsed:?}").contains("s3cret-1"));
        for bad in [
            json!("s3cret-2"),
            json!(["s3cret-3"]),
            json!({"A": 4_242_424_242u64}),
            json!({"A": ["s3cret-5"]}),
            json!({"A": {"s3cret-6": true}}),
        ] {
            let err = parse(bad.clone()).unwrap_err().to_string();
            for leaked in ["s3cret", "4242"] {
                assert!(!err.contains(leaked), "{bad}: {err}");
            }
        }
    }
}
