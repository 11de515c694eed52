//! roost's private network: one IPv6 network namespace per machine, a
//! bridge per app, addresses from `fdaa::/16` (Fly's 6PN shape), isolation
//! between apps, roost's services at a fixed address, and internal DNS.
//!
//! Usable alone: it knows nothing of apps or machines beyond names and
//! numbers. The caller (roost's orchestrator) allocates and stores the
//! numbers (an app's network number, a machine's slot) and calls
//! [`Network`] at the right moments of a machine's life:
//!
//! - **create**: [`Network::connect`] makes the machine's namespace (a
//!   bind-mounted file at [`Network::netns_path`], so a stopped machine
//!   holds no process), its veth pair (`eth0` inside, `v<id>` on the app's
//!   bridge), its address and default route. The OCI bundle then *joins*
//!   that namespace by path, so **start** does no network work at all: it
//!   only checks [`Network::is_connected`] (one `statfs`).
//! - **destroy**: [`Network::disconnect`]; **app delete**:
//!   [`Network::remove_app`]; **daemon start**: [`Network::setup_host`],
//!   then `connect` for every machine (recreating what a reboot or a crash
//!   lost) and [`Network::remove_orphans`].
//!
//! Every call is idempotent, so the orchestrator's durable operations can
//! repeat any of them after a crash.
//!
//! Isolation: machines of one app share a bridge (layer 2), so they reach
//! each other directly. Anything else a machine sends goes to its gateway,
//! the host, which delivers it locally when it is for a host address (the
//! gateway itself, the service address, any other) and otherwise routes it.
//! Policy rules ([`policy_rules`]) turn every routed packet from or to the
//! site's prefix into an ICMPv6 "administratively prohibited", whatever the
//! host's `forwarding` sysctl says. Locally delivered packets pass an input
//! filter ([`firewall`], netfilter): from a machine the host accepts only
//! roost's services at the service address ([`firewall::SERVICE_PORTS`]),
//! replies on connections the host opened and the ICMPv6 that neighbour
//! discovery and errors need, and refuses the rest the same way. So one
//! app's machines cannot reach another's, no machine reaches beyond the
//! host nor any other service of the host (a database listening on `[::]`),
//! and nothing outside reaches a machine; the host itself reaches every
//! machine (its packets are not routed from another interface).
//!
//! Machines reach the outside only through roost's egress proxy at the
//! service address ([`plan::SERVICE_EGRESS_PORT`], one of the service
//! ports), which dials on their behalf under their app's policy: no
//! machine packet is ever routed beyond the host. Routed egress would plug
//! in at [`Egress`]; today its only choice is none.

pub mod dns;
pub mod firewall;
mod kernel;
pub mod plan;

use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

pub use plan::AddressPlan;

/// Default directory of the namespace files of site `site`'s machines:
/// `/run/roost/netns` for site 0 (where it has always been), and
/// `/run/roost/netns-SSSS` (the site in hex, as in bridge names) for the
/// others, so two daemons with different sites never share one: each
/// removes, at start, the namespaces it does not know. Under `/run` on
/// purpose: namespaces do not survive a reboot, and neither does `/run`,
/// so a file there is never a stale promise (recovery recreates them).
pub fn default_netns_dir(site: u16) -> PathBuf {
    match site {
        0 => PathBuf::from("/run/roost/netns"),
        site => PathBuf::from(format!("/run/roost/netns-{site:04x}")),
    }
}

/// The file in a netns dir that names the daemon owning it. Its name starts
/// with a dot, which no machine id does.
const OWNER_FILE: &str = ".owner";
/// Priority of the first policy rule; the others follow. Below the main
/// table's 32766, above the local table's 0.
pub const RULE_PRIORITY: u32 = 17_000;

/// Errors of the private network; messages say what failed and on what.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The caller passed something the plan cannot express.
    #[error("{0}")]
    InvalidInput(String),
    /// A netlink request was refused.
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// A file, mount or namespace operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The netns dir is marked as another daemon's.
    #[error(
        "the network namespace dir {} belongs to another roost ({owner}), and two must \
         never share one: each removes the namespaces it does not know",
        dir.display()
    )]
    OwnedByAnother { dir: PathBuf, owner: String },
    /// The kernel's state is not what was just set up.
    #[error("{0}")]
    Kernel(String),
    /// A host tool (the firewall's `ip6tables-save`/`-restore`) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
}

impl NetError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> NetError {
        NetError::Io {
            what: what.into(),
            source,
        }
    }
}

/// How machines reach destinations outside the private network.
///
/// This is the seam for host-configured egress. A routed or NAT66 egress
/// adds, between the isolation rules and the catch-all "prohibit" of
/// [`policy_rules`], a rule `from <site prefix> lookup <egress table>`
/// (the table holding the host's uplink route), lets replies back in with
/// a rule keyed on a conntrack mark set by its NAT66 rules, and answers
/// non-`.internal` names in [`dns`] by forwarding. Nothing else changes:
/// machines already send everything to their gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Egress {
    /// No egress (the default, and the only choice so far): machines reach
    /// their own app's machines and roost's service address, nothing else.
    #[default]
    None,
}

/// Host configuration of the private network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Second 16 bits of every address (`fdaa:<site>::/32`). 0 by default,
    /// which puts the DNS server at `fdaa::3` as on Fly. Two roost daemons
    /// on one host need different sites.
    pub site: u16,
    /// Where machines' namespace files live ([`default_netns_dir`]).
    pub netns_dir: PathBuf,
    pub egress: Egress,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            site: 0,
            netns_dir: default_netns_dir(0),
            egress: Egress::None,
        }
    }
}

/// Where a policy rule sends what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleTarget {
    /// Look the route up in the main table.
    Main,
    /// Refuse: ICMPv6 destination unreachable, administratively prohibited.
    Prohibit,
}

/// One IPv6 policy-routing rule (`ip -6 rule`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    pub priority: u32,
    pub from: Option<(Ipv6Addr, u8)>,
    pub to: Option<(Ipv6Addr, u8)>,
    /// Only packets the host itself sends (`iif lo`).
    pub from_host: bool,
    pub target: RuleTarget,
}

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.priority)?;
        if let Some((addr, len)) = self.from {
            write!(f, " from {addr}/{len}")?;
        }
        if let Some((addr, len)) = self.to {
            write!(f, " to {addr}/{len}")?;
        }
        if self.from_host {
            write!(f, " iif lo")?;
        }
        match self.target {
            RuleTarget::Main => write!(f, " lookup main"),
            RuleTarget::Prohibit => write!(f, " prohibit"),
        }
    }
}

/// The site's policy rules, in priority order:
///
/// 1. `to <site> iif lo lookup main`: the host reaches every machine;
/// 2. `to <site> prohibit`: nothing routed from elsewhere (another app's
///    bridge, an uplink) reaches a machine;
/// 3. `from <site> prohibit`: machines reach nothing beyond the host
///    (where [`Egress`] would plug in, before this rule).
///
/// Local delivery (the local table, priority 0) comes first, so machines
/// always reach the host's own addresses; packets between machines of one
/// app never meet these rules, they stay on the bridge.
pub fn policy_rules(plan: &AddressPlan, egress: Egress) -> Vec<PolicyRule> {
    let site = plan.site_prefix();
    let Egress::None = egress;
    vec![
        PolicyRule {
            priority: RULE_PRIORITY,
            from: None,
            to: Some(site),
            from_host: true,
            target: RuleTarget::Main,
        },
        PolicyRule {
            priority: RULE_PRIORITY + 1,
            from: None,
            to: Some(site),
            from_host: false,
            target: RuleTarget::Prohibit,
        },
        PolicyRule {
            priority: RULE_PRIORITY + 2,
            from: Some(site),
            to: None,
            from_host: false,
            target: RuleTarget::Prohibit,
        },
    ]
}

/// A machine's place in the network, as the caller stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineNet {
    pub machine_id: String,
    /// The app's network number (1..=65535).
    pub network: u16,
    /// The machine's slot in the app's subnet (2 and up).
    pub slot: u32,
}

/// The private network of one roost site. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Network {
    config: NetConfig,
    plan: AddressPlan,
}

impl Network {
    /// No side effects; [`Network::setup_host`] touches the host.
    pub fn new(config: NetConfig) -> Result<Network, NetError> {
        if !config.netns_dir.is_absolute() {
            return Err(NetError::InvalidInput(format!(
                "netns_dir {} must be an absolute path",
                config.netns_dir.display()
            )));
        }
        Ok(Network {
            plan: AddressPlan::new(config.site),
            config,
        })
    }

    pub fn plan(&self) -> &AddressPlan {
        &self.plan
    }

    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Where roost's services answer machines.
    pub fn service_address(&self) -> Ipv6Addr {
        self.plan.service_address()
    }

    /// The address of `machine`.
    pub fn address(&self, machine: &MachineNet) -> Result<Ipv6Addr, NetError> {
        self.plan.machine_address(machine.network, machine.slot)
    }

    /// The machine's namespace file, which its OCI bundle joins.
    pub fn netns_path(&self, machine_id: &str) -> PathBuf {
        self.config.netns_dir.join(machine_id)
    }

    /// Marks the netns dir as `owner`'s (the daemon's data dir) for this
    /// site, or refuses with [`NetError::OwnedByAnother`] when another
    /// daemon's mark is there: a daemon removes the namespaces it does not
    /// know, so two must never share the dir. Call before anything else
    /// touches the host.
    pub fn claim_netns_dir(&self, owner: &Path) -> Result<(), NetError> {
        let dir = &self.config.netns_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| NetError::io(format!("cannot create {}", dir.display()), e))?;
        let mark = format!(
            "site {:04x}, data dir {}\n",
            self.config.site,
            owner.display()
        );
        let path = dir.join(OWNER_FILE);
        match std::fs::read_to_string(&path) {
            Ok(found) if found == mark => Ok(()),
            Ok(found) => Err(NetError::OwnedByAnother {
                dir: dir.clone(),
                owner: found.trim_end().to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::write(&path, mark)
                .map_err(|e| NetError::io(format!("cannot write {}", path.display()), e)),
            Err(e) => Err(NetError::io(format!("cannot read {}", path.display()), e)),
        }
    }

    /// Installs the input filter ([`firewall`]), puts the service address on
    /// the host (on `lo`, as a /128) and installs the isolation rules.
    /// Idempotent; call at every daemon start.
    pub async fn setup_host(&self) -> Result<(), NetError> {
        firewall::install(&self.plan).await?;
        kernel::setup_host(
            self.service_address(),
            policy_rules(&self.plan, self.config.egress),
            true,
        )
        .await
    }

    /// Creates whatever of the machine's network is missing (bridge,
    /// namespace, veth pair, address, route). Idempotent.
    pub async fn connect(&self, machine: &MachineNet) -> Result<(), NetError> {
        let link = kernel::machine_link(
            &self.plan,
            self.netns_path(&machine.machine_id),
            &machine.machine_id,
            machine.network,
            self.address(machine)?,
        )?;
        kernel::connect(link).await
    }

    /// Whether the machine's namespace exists: what start checks (one
    /// `statfs`), so that a start after a reboot reconnects first.
    pub fn is_connected(&self, machine_id: &str) -> bool {
        kernel::is_netns(&self.netns_path(machine_id))
    }

    /// Removes the machine's veth pair and namespace. Idempotent.
    pub async fn disconnect(&self, machine_id: &str) -> Result<(), NetError> {
        kernel::disconnect(plan::veth_name(machine_id), self.netns_path(machine_id)).await
    }

    /// Removes the app network's bridge (and with it the gateway address).
    pub async fn remove_app(&self, network: u16) -> Result<(), NetError> {
        kernel::delete_links(vec![self.plan.bridge_name(network)]).await
    }

    /// Machines with a namespace file in the netns dir (not its owner mark).
    pub fn connected_machines(&self) -> Result<Vec<String>, NetError> {
        let mut names = list_dir(&self.config.netns_dir)?;
        names.retain(|name| !name.starts_with('.'));
        Ok(names)
    }

    /// App networks of this site that have a bridge on the host.
    pub async fn bridged_networks(&self) -> Result<Vec<u16>, NetError> {
        let names = kernel::link_names(self.plan.bridge_prefix()).await?;
        Ok(names
            .iter()
            .filter_map(|name| self.plan.network_of_bridge(name))
            .collect())
    }

    /// Disconnects machines and removes bridges that the caller no longer
    /// knows: what a crash between a kernel change and its record leaves.
    pub async fn remove_orphans(
        &self,
        machine_exists: impl Fn(&str) -> bool,
        network_exists: impl Fn(u16) -> bool,
    ) -> Result<(), NetError> {
        for id in self.connected_machines()? {
            if !machine_exists(&id) {
                tracing::warn!(machine = %id, "removing orphaned network namespace");
                self.disconnect(&id).await?;
            }
        }
        for network in self.bridged_networks().await? {
            if !network_exists(network) {
                tracing::warn!(network, "removing orphaned app bridge");
                self.remove_app(network).await?;
            }
        }
        Ok(())
    }

    /// Removes everything of this site from the host: every machine's
    /// namespace and veth, every bridge, the rules, the input filter and
    /// the service address.
    /// Machines still running keep their namespace until they exit. For
    /// tests and uninstalling; `roost up` never calls it (machines outlive
    /// the daemon).
    pub async fn teardown(&self) -> Result<(), NetError> {
        let links = async {
            for id in self.connected_machines()? {
                self.disconnect(&id).await?;
            }
            let bridges = kernel::link_names(self.plan.bridge_prefix()).await?;
            kernel::delete_links(bridges).await?;
            kernel::setup_host(
                self.service_address(),
                policy_rules(&self.plan, self.config.egress),
                false,
            )
            .await
        }
        .await;
        // Removed whatever failed above: nothing else of the host's filter
        // table depends on it, and a test's teardown must not leave it.
        let filter = firewall::remove(&self.plan).await;
        // The mark goes last, and the dir with it if nothing else is left.
        let dir = &self.config.netns_dir;
        let unmarked = match std::fs::remove_file(dir.join(OWNER_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(NetError::io(
                format!("cannot remove the owner mark of {}", dir.display()),
                e,
            )),
            _ => Ok(()),
        };
        let _kept_if_not_empty = std::fs::remove_dir(dir);
        links.and(filter).and(unmarked)
    }

    /// [`Network::teardown`] for callers outside any async runtime (the
    /// `Drop` of a test harness): runs on a thread of its own.
    pub fn teardown_blocking(&self) -> Result<(), NetError> {
        let net = self.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| NetError::io("cannot start a runtime for teardown", e))?
                .block_on(net.teardown())
        })
        .join()
        .map_err(|_| NetError::Kernel("the teardown thread panicked".into()))?
    }

    /// The machine's `/etc/resolv.conf`: roost's DNS server, and the app's
    /// machines' zone as search domain so a bare machine id resolves.
    pub fn resolv_conf(&self, app: &str) -> String {
        format!(
            "# Written by roost: internal DNS for <machine_id>.vm.{app}.internal, {app}.internal\n\
             # and top1.nearest.of.{app}.internal. There is no recursion (no egress).\n\
             nameserver {}\n\
             search vm.{app}.{zone}\n",
            self.service_address(),
            zone = dns::ZONE,
        )
    }
}

fn list_dir(dir: &Path) -> Result<Vec<String>, NetError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetError::io(format!("cannot list {}", dir.display()), e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NetError::io(format!("cannot list {}", dir.display()), e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_each_site_has_its_own_default_netns_dir() {
        assert_eq!(default_netns_dir(0), Path::new("/run/roost/netns"));
        assert_eq!(default_netns_dir(0x1ab), Path::new("/run/roost/netns-01ab"));
        assert_ne!(default_netns_dir(1), default_netns_dir(2));
    }

    #[test]
    fn security_a_netns_dir_marked_by_another_daemon_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let network = |site| {
            Network::new(NetConfig {
                site,
                netns_dir: dir.path().join("netns"),
                ..Default::default()
            })
            .expect("config")
        };
        let first = network(1);
        first
            .claim_netns_dir(Path::new("/data/one"))
            .expect("claim");
        first
            .claim_netns_dir(Path::new("/data/one"))
            .expect("its own again");
        assert_eq!(
            first.connected_machines().expect("list"),
            Vec::<String>::new()
        );
        for (other, owner) in [(network(2), "/data/one"), (network(1), "/data/two")] {
            let err = other
                .claim_netns_dir(Path::new(owner))
                .expect_err("another daemon's dir");
            let message = err.to_string();
            assert!(
                message.contains("site 0001, data dir /data/one"),
                "{message}"
            );
            assert!(matches!(err, NetError::OwnedByAnother { .. }), "{err:?}");
            // The library names no flag of any front end: `roost up`'s
            // CLI adds that advice (cli/hints.rs).
            assert!(!message.contains("--"), "{message}");
        }
    }

    #[test]
    fn rules_isolate_the_site_and_let_the_host_in() {
        let rules = policy_rules(&AddressPlan::new(0x7e57), Egress::None);
        let text: Vec<String> = rules.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "17000: to fdaa:7e57::/32 iif lo lookup main",
                "17001: to fdaa:7e57::/32 prohibit",
                "17002: from fdaa:7e57::/32 prohibit",
            ]
        );
    }

    #[test]
    fn resolv_conf_points_at_the_service_address() {
        let net = Network::new(NetConfig::default()).unwrap();
        let conf = net.resolv_conf("web");
        assert!(conf.contains("\nnameserver fdaa::3\n"), "{conf}");
        assert!(conf.contains("\nsearch vm.web.internal\n"), "{conf}");
        assert!(Network::new(NetConfig {
            netns_dir: "relative".into(),
            ..NetConfig::default()
        })
        .is_err());
    }
}
