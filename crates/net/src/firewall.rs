//! Input filtering: what machines may send to the host itself.
//!
//! Why it is needed: the policy rules ([`crate::policy_rules`]) only meet
//! *routed* packets. A packet a machine sends to an address of the host (its
//! gateway `fdaa:S:N::1`, the service address, the bridge's link-local
//! address, an address of another site or of an uplink) is delivered
//! locally, before any policy rule. Without a filter, every host service
//! listening on a wildcard address (`[::]:22`, a database on `[::]:5432`)
//! would answer every machine.
//!
//! What it lets through, for packets entering the host on any bridge of the
//! site (`-i rb-SSSS-+`; one rule set per site, so apps coming and going
//! never change it):
//! - TCP segments that do not open a connection (no lone SYN): the replies
//!   on connections the host opened to machines (the edge proxy, health
//!   checks). A machine cannot open a connection with them, the host's TCP
//!   answers a segment of no connection with a reset. Stateless on purpose:
//!   no conntrack, so no table to fill, no cost per packet on the proxy's
//!   path, and nothing to relearn after a restart;
//! - UDP to a host socket that carries the site's mark
//!   ([`AddressPlan::socket_mark`], `SO_MARK`): the edge proxy's UDP flows,
//!   whose sockets are connected to a machine. `-m socket` finds the
//!   socket a datagram is for (skipping sockets bound to the wildcard
//!   address) and `--restore-skmark` copies its mark to the packet, which
//!   `-m mark` then compares. So only roost's own flows match: a host
//!   program's socket bound to the gateway or the service address carries
//!   no mark, and a connected socket takes datagrams from its peer only;
//! - roost's own services at the service address ([`SERVICE_PORTS`]);
//! - ICMPv6 neighbour discovery, error messages and echo replies (the host
//!   pings machines);
//!
//! and refuses everything else with ICMPv6 "administratively prohibited",
//! as the policy rules do, so a client fails at once (`EACCES`, "Permission
//! denied") instead of timing out. Traffic between machines of one app is
//! bridged and never reaches the host's input; what the host sends to
//! machines leaves through its output. Neither meets these rules.
//!
//! How: netfilter through the `ip6tables` tools (Debian package
//! [`PACKAGE`]; nf_tables or legacy backend alike). No crate that speaks
//! nf_tables' netlink protocol is available to roost, and these tools are
//! the reference implementation of it. The site's chain
//! ([`AddressPlan::input_chain`], `ROOST-IN-SSSS`) lives in the `filter`
//! table and is jumped to from the top of `INPUT`, ahead of any host
//! firewall rule that might accept the packet first. Every change is one
//! `ip6tables-restore --noflush` transaction, so the chain is never seen
//! half-filled; it is idempotent: declaring the chain creates or empties it
//! before its rules are appended, and the jump is inserted only when
//! `ip6tables-save` does not show it already. Programs are run with argument
//! vectors, never through a shell.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::plan::{
    AddressPlan, SERVICE_API_PORT, SERVICE_DNS_PORT, SERVICE_EGRESS_PORT, SERVICE_S3_PORT,
    SERVICE_TOKENIZER_PORT,
};
use crate::NetError;

/// The Debian package of the tools run here.
pub const PACKAGE: &str = "iptables";
const SAVE: &str = "ip6tables-save";
const RESTORE: &str = "ip6tables-restore";
/// Where Debian installs them; a daemon's `PATH` may lack the sbin dirs.
const SEARCH_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];
/// How long a tool may wait for the legacy backend's xtables lock.
const LOCK_WAIT_SECS: &str = "10";
/// Upper bound on one run of a tool (the lock wait included).
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Protocol and port of every service machines may reach at the service
/// address: DNS (UDP and TCP), the API, S3, the tokenizer and the egress
/// proxy.
pub const SERVICE_PORTS: [(&str, u16); 6] = [
    ("udp", SERVICE_DNS_PORT),
    ("tcp", SERVICE_DNS_PORT),
    ("tcp", SERVICE_API_PORT),
    ("tcp", SERVICE_S3_PORT),
    ("tcp", SERVICE_TOKENIZER_PORT),
    ("tcp", SERVICE_EGRESS_PORT),
];

/// ICMPv6 types machines may send to the host: errors, echo replies and
/// neighbour discovery.
const ICMPV6_TYPES: [&str; 7] = [
    "destination-unreachable",
    "packet-too-big",
    "time-exceeded",
    "parameter-problem",
    "echo-reply",
    "neighbour-solicitation",
    "neighbour-advertisement",
];

/// The rules of the site's input chain, in order, in `ip6tables` syntax
/// (without `-A <chain>`). The busiest first: replies to the proxy, then
/// the services.
pub fn input_rules(plan: &AddressPlan) -> Vec<String> {
    let service = plan.service_address();
    let mut rules = vec![
        "-p tcp ! --syn -j ACCEPT".to_string(),
        format!(
            "-p udp -m socket --restore-skmark -m mark --mark {:#x} -j ACCEPT",
            plan.socket_mark()
        ),
    ];
    rules.extend(
        SERVICE_PORTS
            .iter()
            .map(|(proto, port)| format!("-d {service}/128 -p {proto} --dport {port} -j ACCEPT")),
    );
    rules.extend(
        ICMPV6_TYPES
            .iter()
            .map(|kind| format!("-p ipv6-icmp --icmpv6-type {kind} -j ACCEPT")),
    );
    rules.push("-j REJECT --reject-with icmp6-adm-prohibited".to_string());
    rules
}

/// The rule in `INPUT` that sends the site's bridges' packets to its
/// chain, exactly as `ip6tables-save` prints it (after `-A INPUT `).
fn jump_rule(plan: &AddressPlan) -> String {
    format!("-i {}+ -j {}", plan.bridge_prefix(), plan.input_chain())
}

/// What the host's `filter` table holds of a site's input filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// Whether the site's chain exists.
    pub chain: bool,
    /// How many jumps to it `INPUT` holds (1 when installed).
    pub jumps: usize,
}

/// What the host has of the site's input filter (for checks and tests).
pub async fn installed(plan: &AddressPlan) -> Result<Installed, NetError> {
    Ok(parse_saved(
        &run(SAVE, &["-t", "filter"], None).await?,
        plan,
    ))
}

/// The site's part of `ip6tables-save`'s output.
fn parse_saved(saved: &str, plan: &AddressPlan) -> Installed {
    let declaration = format!(":{} ", plan.input_chain());
    let jump = format!("-A INPUT {}", jump_rule(plan));
    Installed {
        chain: saved.lines().any(|line| line.starts_with(&declaration)),
        jumps: saved.lines().filter(|line| line.trim_end() == jump).count(),
    }
}

/// The `ip6tables-restore` input that installs (or refreshes) the site's
/// chain, and adds the jump unless `INPUT` has it already.
fn install_script(plan: &AddressPlan, has_jump: bool) -> String {
    let chain = plan.input_chain();
    let mut script = format!("*filter\n:{chain} - [0:0]\n");
    for rule in input_rules(plan) {
        script.push_str(&format!("-A {chain} {rule}\n"));
    }
    if !has_jump {
        script.push_str(&format!("-I INPUT 1 {}\n", jump_rule(plan)));
    }
    script.push_str("COMMIT\n");
    script
}

/// The `ip6tables-restore` input that removes what [`installed`] found.
fn remove_script(plan: &AddressPlan, found: Installed) -> String {
    let chain = plan.input_chain();
    let mut script = "*filter\n".to_string();
    for _ in 0..found.jumps {
        script.push_str(&format!("-D INPUT {}\n", jump_rule(plan)));
    }
    if found.chain {
        script.push_str(&format!("-F {chain}\n-X {chain}\n"));
    }
    script.push_str("COMMIT\n");
    script
}

/// Installs the site's input filter, or brings it back to the rules above.
pub(crate) async fn install(plan: &AddressPlan) -> Result<(), NetError> {
    let found = installed(plan).await?;
    restore(&install_script(plan, found.jumps > 0)).await
}

/// Removes the site's input filter; nothing installed is fine.
pub(crate) async fn remove(plan: &AddressPlan) -> Result<(), NetError> {
    let found = installed(plan).await?;
    if found.chain || found.jumps > 0 {
        restore(&remove_script(plan, found)).await?;
    }
    Ok(())
}

/// Applies `script` to the host's tables as one transaction.
async fn restore(script: &str) -> Result<(), NetError> {
    run(RESTORE, &["-w", LOCK_WAIT_SECS, "--noflush"], Some(script)).await?;
    Ok(())
}

/// Runs `program` with `args` (and `input` on its stdin); returns its
/// stdout. A failure names the command, its status and its stderr (and the
/// input it was given, which `ip6tables-restore`'s line numbers refer to).
async fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, NetError> {
    let command = format!("{program} {}", args.join(" "));
    let path = find_program(program).ok_or_else(|| {
        NetError::io(
            format!(
                "cannot find {program} in {}: install the Debian package {PACKAGE}",
                SEARCH_DIRS.join(", ")
            ),
            std::io::ErrorKind::NotFound.into(),
        )
    })?;
    let mut child = tokio::process::Command::new(&path)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| NetError::io(format!("cannot run `{command}`"), e))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A tool that fails early closes its stdin; its status and stderr
        // below say why, so a broken pipe here is not the error to report.
        let _ = stdin.write_all(text.as_bytes()).await;
    }
    let output = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| NetError::Kernel(format!("`{command}` did not finish in {TOOL_TIMEOUT:?}")))?
        .map_err(|e| NetError::io(format!("cannot wait for `{command}`"), e))?;
    if !output.status.success() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if let Some(text) = input {
            stderr.push_str(&format!("\ninput was:\n{text}"));
        }
        return Err(NetError::Command {
            command,
            status: output.status.to_string(),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn find_program(program: &str) -> Option<PathBuf> {
    SEARCH_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_reach_only_the_services_at_the_service_address() {
        let rules = input_rules(&AddressPlan::new(0x7e57));
        assert_eq!(
            rules,
            [
                "-p tcp ! --syn -j ACCEPT",
                "-p udp -m socket --restore-skmark -m mark --mark 0x524f7e57 -j ACCEPT",
                "-d fdaa:7e57::3/128 -p udp --dport 53 -j ACCEPT",
                "-d fdaa:7e57::3/128 -p tcp --dport 53 -j ACCEPT",
                "-d fdaa:7e57::3/128 -p tcp --dport 4280 -j ACCEPT",
                "-d fdaa:7e57::3/128 -p tcp --dport 9000 -j ACCEPT",
                "-d fdaa:7e57::3/128 -p tcp --dport 4001 -j ACCEPT",
                "-d fdaa:7e57::3/128 -p tcp --dport 3128 -j ACCEPT",
                "-p ipv6-icmp --icmpv6-type destination-unreachable -j ACCEPT",
                "-p ipv6-icmp --icmpv6-type packet-too-big -j ACCEPT",
                "-p ipv6-icmp --icmpv6-type time-exceeded -j ACCEPT",
                "-p ipv6-icmp --icmpv6-type parameter-problem -j ACCEPT",
                "-p ipv6-icmp --icmpv6-type echo-reply -j ACCEPT",
                "-p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT",
                "-p ipv6-icmp --icmpv6-type neighbour-advertisement -j ACCEPT",
                "-j REJECT --reject-with icmp6-adm-prohibited",
            ]
        );
    }

    #[test]
    fn scripts_add_the_jump_once_and_remove_what_exists() {
        let plan = AddressPlan::new(0x7e57);
        let saved = "*filter\n:INPUT ACCEPT [0:0]\n:ROOST-IN-7e57 - [0:0]\n\
                     :ROOST-IN-7e58 - [0:0]\n\
                     -A INPUT -i rb-7e57-+ -j ROOST-IN-7e57\n\
                     -A INPUT -i rb-7e58-+ -j ROOST-IN-7e58\n\
                     -A INPUT -i rb-7e57-+ -j ROOST-IN-7e57\nCOMMIT\n";
        let found = parse_saved(saved, &plan);
        assert_eq!(
            found,
            Installed {
                chain: true,
                jumps: 2
            }
        );
        let none = parse_saved("*filter\nCOMMIT\n", &plan);
        assert_eq!(
            none,
            Installed {
                chain: false,
                jumps: 0
            }
        );

        let fresh = install_script(&plan, false);
        assert!(fresh.starts_with("*filter\n:ROOST-IN-7e57 - [0:0]\n-A ROOST-IN-7e57 -p tcp"));
        assert!(fresh.ends_with("-I INPUT 1 -i rb-7e57-+ -j ROOST-IN-7e57\nCOMMIT\n"));
        assert!(!install_script(&plan, true).contains("INPUT"));

        assert_eq!(
            remove_script(&plan, found),
            "*filter\n-D INPUT -i rb-7e57-+ -j ROOST-IN-7e57\n\
             -D INPUT -i rb-7e57-+ -j ROOST-IN-7e57\n\
             -F ROOST-IN-7e57\n-X ROOST-IN-7e57\nCOMMIT\n"
        );
    }
}
