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
    CreateAppRequest, CreateMachineRequest, ExecRequest, Machine, MachineConfig, MachineGuest,
    MachineInit, MachineState, RegistryAuth, StopRequest,
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
machine_id (14 hex characters) returned by run_machine or list_machines.";

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

/// What to do after an error, by kind; the error's own message says what
/// was wrong.
fn hint(err: &MachineError) -> &'static str {
    match err {
        MachineError::Invalid(_) => "Fix the arguments and call the tool again.",
        MachineError::NotFound(_) => {
            "list_apps, list_machines, list_images and list_dir show what exists."
        }
        MachineError::Conflict(_) => {
            "Check the machine's state with get_machine: call start_machine first if it is stopped or created, or wait_machine while an operation is in progress."
        }
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

/// A tool result: the structured `value` (a JSON object) and, as text for
/// clients that only show text, a one-line summary followed by the same JSON.
fn reply<T: Serialize>(
    result: Result<T, MachineError>,
    summary: impl FnOnce(&T) -> String,
) -> CallToolResult {
    let value = match result {
        Ok(value) => value,
        Err(err) => return tool_error(&err, hint(&err)),
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
            hint(&MachineError::Internal(String::new())),
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
        reply(result, |v| {
            format!("{} apps", v["apps"].as_array().map_or(0, Vec::len))
        })
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
        reply(result, |v| {
            format!("{} images", v["images"].as_array().map_or(0, Vec::len))
        })
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
        reply(result, state_line)
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
            format!(
                "{} machines in app {}",
                v["machines"].as_array().map_or(0, Vec::len),
                args.app
            )
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
            format!(
                "{} entries in {}",
                v["entries"].as_array().map_or(0, Vec::len),
                text(&v["path"])
            )
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
        let result = tool_error(&err, hint(&err));
        assert_eq!(result.is_error, Some(true));
        let text = result.content[0].as_text().map(|t| t.text.clone());
        assert!(text.is_some_and(
            |t| t.starts_with("machine m is stopped. Check") && t.contains("start_machine")
        ));
    }
}
