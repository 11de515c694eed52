//! Secret tools: an app's secrets, set and listed without their values
//! ever coming back.

use super::reply::reply;
use super::{AppArgs, Tools};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use roost_machines::MachineError;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

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

impl Tools {
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

#[tool_router(router = secrets_router, vis = "pub(super)")]
impl Tools {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
