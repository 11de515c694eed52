//! Image tools: the local image store and registry pulls.

use super::reply::{count, reply, text};
use super::Tools;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use roost_machines::MachineError;
use roost_types::RegistryAuth;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

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

fn image_view(image: &roost_machines::Image) -> Value {
    json!({
        "reference": image.reference, "digest": image.digest, "size": image.size,
        "created_at": image.created_at,
    })
}

#[tool_router(router = images_router, vis = "pub(super)")]
impl Tools {
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
}
