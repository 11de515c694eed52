//! Files of the data dir `roost up` reads at start: the admin token and the
//! registry settings.

use super::UpArgs;
use anyhow::{Context, Result};
use roost_machines::RegistryConfig;
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

/// The admin token, created on first start (0600, 32 random bytes as hex).
pub(super) fn admin_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("cannot read /dev/urandom")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    roost_atomic_file::write(&path, format!("{token}\n").as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "wrote the admin API token");
    Ok(token)
}
