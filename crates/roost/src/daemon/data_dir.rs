//! Files of the data dir `roost up` reads at start: the root key, the
//! admin token and the token record, and the registry settings.

use super::UpArgs;
use anyhow::{Context, Result};
use roost_machines::RegistryConfig;
use roost_tokens::{Authority, Caveats, RootKey};
use std::path::Path;

/// Name of the registry settings file in the data dir: `{"insecure": [..], "ca_file": ..,
/// "credentials": {"HOST[:PORT]": {"username": .., "password": ..}}}`.
const REGISTRIES_FILE: &str = "registries.json";

/// Registry settings: the data dir's registries.json (if any) plus the command-line flags.
pub(super) fn registry_config(args: &UpArgs) -> Result<RegistryConfig> {
    let path = args.data_dir.join(REGISTRIES_FILE);
    let mut config = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is invalid; expected {{\"insecure\": [\"HOST:PORT\"], \"ca_file\": \"PATH\", \"credentials\": {{\"HOST:PORT\": {{\"username\": .., \"password\": ..}}}}}}",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RegistryConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    config
        .insecure
        .extend(args.insecure_registries.iter().cloned());
    if let Some(ca) = &args.registry_ca {
        config.ca_file = Some(ca.clone());
    }
    Ok(config)
}

/// The root key tokens are signed with: `root-key` (0600), its number
/// and private half as JSON, created on first start.
const ROOT_KEY_FILE: &str = "root-key";
/// The admin token, a token of the root key without caveats.
const ADMIN_TOKEN_FILE: &str = "admin-token";
/// The admin token of a data dir from before tokens were biscuits (a
/// random secret), moved here from `admin-token` so that clients holding
/// it keep working.
const LEGACY_ADMIN_TOKEN_FILE: &str = "admin-token.legacy";
/// What was issued and revoked (ids and caveats, never tokens).
const TOKEN_RECORD_FILE: &str = "tokens.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRootKey {
    id: u32,
    private_key: String,
}

/// This roost's tokens: the root key (created on first start), the admin
/// token (minted on first start; a legacy admin token is moved aside and
/// still accepted), and the record of issued tokens.
pub(super) fn tokens(data_dir: &Path) -> Result<Authority> {
    let key = root_key(data_dir)?;
    let legacy_path = data_dir.join(LEGACY_ADMIN_TOKEN_FILE);
    let admin_path = data_dir.join(ADMIN_TOKEN_FILE);
    let admin = match read_trimmed(&admin_path)? {
        Some(token) if key.verifier().verify(&token, |_| false).is_ok() => token,
        found => {
            if let Some(old) = found.filter(|token| is_legacy(token)) {
                roost_atomic_file::write(&legacy_path, format!("{old}\n").as_bytes(), 0o600)
                    .with_context(|| format!("cannot write {}", legacy_path.display()))?;
                tracing::info!(path = %legacy_path.display(), "kept the old admin token, which stays valid");
            }
            let minted = key.mint(&Caveats::default())?;
            roost_atomic_file::write(&admin_path, format!("{}\n", minted.token).as_bytes(), 0o600)
                .with_context(|| format!("cannot write {}", admin_path.display()))?;
            tracing::info!(path = %admin_path.display(), "wrote the admin API token");
            minted.token
        }
    };
    let legacy = read_trimmed(&legacy_path)?;
    Ok(Authority::open(
        &key,
        &admin,
        legacy,
        data_dir.join(TOKEN_RECORD_FILE),
    )?)
}

/// The root key, created on first start.
fn root_key(data_dir: &Path) -> Result<RootKey> {
    let path = data_dir.join(ROOT_KEY_FILE);
    if let Some(text) = read_trimmed(&path)? {
        let stored: StoredRootKey = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a root key", path.display()))?;
        let bytes = hex_bytes(&stored.private_key)
            .with_context(|| format!("{} is not a root key", path.display()))?;
        return Ok(RootKey::from_private_bytes(stored.id, &bytes)?);
    }
    let key = RootKey::generate(1);
    let stored = StoredRootKey {
        id: key.id(),
        private_key: key
            .private_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    };
    roost_atomic_file::write_new(&path, &serde_json::to_vec(&stored)?, 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "created the root key API tokens are signed with");
    Ok(key)
}

/// Whether `token` is an admin token of roost before biscuits: 32 random
/// bytes as hex.
fn is_legacy(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex_bytes(text: &str) -> Result<Vec<u8>> {
    anyhow::ensure!(text.len().is_multiple_of(2), "odd number of hex digits");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).context("not hex"))
        .collect()
}

/// The trimmed contents of `path`; `None` if it is missing or blank.
fn read_trimmed(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
