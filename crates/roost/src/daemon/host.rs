//! The host programs `roost up` runs, installed from Debian when missing.

use anyhow::{Context, Result};

/// Host tools `roost up` needs, with the Debian packages that provide them.
const REQUIRED_TOOLS: &[(&str, &str)] = &[
    ("crun", "crun"),
    ("runc", "runc"),
    ("tini-static", "tini"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.xfs", "xfsprogs"),
];

/// What the private network needs besides: its input filter's tool.
const NETWORK_TOOLS: &[(&str, &str)] = &[("ip6tables-restore", roost_net::firewall::PACKAGE)];

/// Whether `tool` is an executable file in a directory of `PATH`.
fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// Installs the Debian packages of missing host tools, so that `roost up`
/// works on a fresh Debian/Ubuntu machine.
pub(super) fn install_missing_packages(private_network: bool) -> Result<()> {
    let network_tools = if private_network { NETWORK_TOOLS } else { &[] };
    let missing: Vec<&str> = REQUIRED_TOOLS
        .iter()
        .chain(network_tools)
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    tracing::info!(packages = ?missing, "installing missing host packages with apt-get");
    let apt = |args: &[&str]| -> Result<()> {
        let status = std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .status()
            .context("cannot run apt-get; install the packages yourself or pass --no-install")?;
        anyhow::ensure!(
            status.success(),
            "apt-get {} failed ({status})",
            args.join(" ")
        );
        Ok(())
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q"];
    install.extend(&missing);
    apt(&install)
}
