//! The address plan: which IPv6 address and which interface name every part
//! of the private network gets. Pure arithmetic, no side effects.
//!
//! ```text
//! fdaa::/16                      IPv6 ULA space of every roost private network (Fly's 6PN shape)
//! fdaa:S::/32                    one roost "site": S is `NetConfig::site` (0 by default)
//! fdaa:S:0::/48                  network 0 is roost's own: the service address fdaa:S::3
//! fdaa:S:N::/48                  app network N (1..=65535, allocated per app, stored)
//! fdaa:S:N::/64                  the part of it on this host, on the bridge rb-SSSS-NNNN
//! fdaa:S:N::1                    the app's gateway: the host's address on that bridge
//! fdaa:S:N::<slot>               a machine (slot >= 2, allocated per machine, stored)
//! ```
//!
//! Why this shape: the site in the second group lets several roost daemons
//! (tests, or hosts of a future cluster) share one kernel without their
//! prefixes, bridges or service addresses colliding; the app network in the
//! third group gives every app its own /48, so isolation is one prefix
//! comparison and a later multi-host roost can give each host another /64
//! of the same /48. With the default site 0 the DNS server is at `fdaa::3`,
//! the address Fly machines use, so software written for Fly finds it.

use std::net::Ipv6Addr;

use crate::NetError;

/// First 16 bits of every private address.
pub const ULA_PREFIX: u16 = 0xfdaa;
/// App network 0 is roost's own; apps get 1 and up.
pub const SERVICE_NETWORK: u16 = 0;
/// Interface id of the service address in network 0 (`fdaa:S::3`).
pub const SERVICE_HOST: u16 = 3;
/// Interface id of an app's gateway (the host) in its /64.
pub const GATEWAY_HOST: u32 = 1;
/// Lowest machine slot in an app's /64 (0 is the subnet-router anycast
/// address, 1 the gateway).
pub const FIRST_MACHINE_SLOT: u32 = 2;
/// Prefix length of an app's network: `fdaa:S:N::/48`, every address of
/// one app, on any host.
pub const APP_PREFIX_LEN: u8 = 48;
/// Prefix length of an app's subnet on this host.
pub const APP_SUBNET_LEN: u8 = 64;
/// Prefix length of a site: every address of one roost daemon.
pub const SITE_LEN: u8 = 32;
/// Linux's limit on interface names (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
/// Name of the machine's side of its veth pair.
pub const MACHINE_IFNAME: &str = "eth0";

// Ports of roost's services at the service address, as machines see them
// (fixed; the host's loopback listen addresses are configured separately).
// They are the only ports of the host a machine reaches (`crate::firewall`).

/// Internal DNS, UDP and TCP.
pub const SERVICE_DNS_PORT: u16 = 53;
/// The Machines API (bearer token as usual).
pub const SERVICE_API_PORT: u16 = 4280;
/// The S3 endpoint (machines' default `AWS_ENDPOINT_URL_S3`).
pub const SERVICE_S3_PORT: u16 = 9000;
/// The tokenizer, as an HTTP proxy.
pub const SERVICE_TOKENIZER_PORT: u16 = 4001;
/// The egress proxy (HTTP forward proxy with CONNECT): machines' only way
/// out, under their app's policy; 3128 is the port HTTP proxies
/// customarily use.
pub const SERVICE_EGRESS_PORT: u16 = 3128;

/// Address arithmetic of one site. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPlan {
    site: u16,
}

impl AddressPlan {
    pub fn new(site: u16) -> AddressPlan {
        AddressPlan { site }
    }

    /// The site number (second 16 bits of every address).
    pub fn site(&self) -> u16 {
        self.site
    }

    /// `fdaa:S::/32`: every address of this site.
    pub fn site_prefix(&self) -> (Ipv6Addr, u8) {
        (
            Ipv6Addr::new(ULA_PREFIX, self.site, 0, 0, 0, 0, 0, 0),
            SITE_LEN,
        )
    }

    /// Where roost's own services (DNS, API, S3, tokenizer, egress) answer
    /// machines.
    pub fn service_address(&self) -> Ipv6Addr {
        Ipv6Addr::new(
            ULA_PREFIX,
            self.site,
            SERVICE_NETWORK,
            0,
            0,
            0,
            0,
            SERVICE_HOST,
        )
    }

    /// The app network's subnet on this host: `fdaa:S:N::/64`.
    pub fn app_subnet(&self, network: u16) -> Result<(Ipv6Addr, u8), NetError> {
        check_network(network)?;
        Ok((
            Ipv6Addr::new(ULA_PREFIX, self.site, network, 0, 0, 0, 0, 0),
            APP_SUBNET_LEN,
        ))
    }

    /// The host's address on the app's bridge, the machines' default gateway.
    pub fn gateway(&self, network: u16) -> Result<Ipv6Addr, NetError> {
        self.host_address(network, GATEWAY_HOST)
    }

    /// The address of the machine holding `slot` in app network `network`.
    pub fn machine_address(&self, network: u16, slot: u32) -> Result<Ipv6Addr, NetError> {
        if slot < FIRST_MACHINE_SLOT {
            return Err(NetError::InvalidInput(format!(
                "machine slot {slot} is reserved: slots start at {FIRST_MACHINE_SLOT}"
            )));
        }
        self.host_address(network, slot)
    }

    fn host_address(&self, network: u16, id: u32) -> Result<Ipv6Addr, NetError> {
        check_network(network)?;
        Ok(Ipv6Addr::new(
            ULA_PREFIX,
            self.site,
            network,
            0,
            0,
            0,
            (id >> 16) as u16,
            id as u16,
        ))
    }

    /// The app network an address of this site's app subnets belongs to
    /// (`None` for the service network, other sites and foreign addresses).
    /// The DNS server uses it to tell which app is asking.
    pub fn network_of(&self, addr: Ipv6Addr) -> Option<u16> {
        let s = addr.segments();
        let in_subnet = s[0] == ULA_PREFIX && s[1] == self.site && s[3..6] == [0, 0, 0];
        (in_subnet && s[2] != SERVICE_NETWORK).then_some(s[2])
    }

    /// The app network and slot of a machine address of this site
    /// (the inverse of [`AddressPlan::machine_address`]); `None` for any
    /// other address.
    pub fn machine_of(&self, addr: Ipv6Addr) -> Option<(u16, u32)> {
        let network = self.network_of(addr)?;
        let s = addr.segments();
        let slot = (u32::from(s[6]) << 16) | u32::from(s[7]);
        (slot >= FIRST_MACHINE_SLOT).then_some((network, slot))
    }

    /// Every address of app network `network`, on any host: `fdaa:S:N::/48`.
    pub fn app_prefix(&self, network: u16) -> Result<(Ipv6Addr, u8), NetError> {
        check_network(network)?;
        Ok((
            Ipv6Addr::new(ULA_PREFIX, self.site, network, 0, 0, 0, 0, 0),
            APP_PREFIX_LEN,
        ))
    }

    /// The app network's bridge: `rb-SSSS-NNNN` (12 characters).
    pub fn bridge_name(&self, network: u16) -> String {
        format!("rb-{:04x}-{network:04x}", self.site)
    }

    /// The prefix every bridge of this site's name starts with.
    pub fn bridge_prefix(&self) -> String {
        format!("rb-{:04x}-", self.site)
    }

    /// The netfilter chain that filters what machines of this site send to
    /// the host: `ROOST-IN-SSSS` ([`crate::firewall`]).
    pub fn input_chain(&self) -> String {
        format!("ROOST-IN-{:04x}", self.site)
    }

    /// The `SO_MARK` roost puts on its own host sockets that take datagrams
    /// from machines (the edge proxy's UDP flows): `0x524f` ("RO") in the
    /// high half, the site in the low half. The input filter accepts UDP
    /// to a host socket only when the socket carries this mark, so a host
    /// program that binds a UDP socket to an address machines can reach
    /// stays out of their reach ([`crate::firewall`]).
    pub fn socket_mark(&self) -> u32 {
        0x524f_0000 | u32::from(self.site)
    }

    /// The app network of a bridge name of this site.
    pub fn network_of_bridge(&self, name: &str) -> Option<u16> {
        let hex = name.strip_prefix(&self.bridge_prefix())?;
        (hex.len() == 4)
            .then(|| u16::from_str_radix(hex, 16).ok())
            .flatten()
            .filter(|&n| n != SERVICE_NETWORK)
    }
}

/// The host side of a machine's veth pair: `v` + the machine id. Machine
/// ids are unique on the host (random, 14 hex characters), so the name is
/// too; other ids are hashed down to fit the kernel's 15 characters.
pub fn veth_name(machine_id: &str) -> String {
    let plain = machine_id.len() < MAX_IFNAME
        && machine_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        return format!("v{machine_id}");
    }
    // FNV-1a: stable across releases, unlike std's hasher.
    let hash = machine_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("v{:014x}", hash >> 8)
}

fn check_network(network: u16) -> Result<(), NetError> {
    if network == SERVICE_NETWORK {
        return Err(NetError::InvalidInput(
            "app network 0 is reserved for roost's own services; app networks start at 1".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_site_matches_fly_addresses() {
        let plan = AddressPlan::new(0);
        assert_eq!(plan.service_address().to_string(), "fdaa::3");
        assert_eq!(plan.gateway(1).unwrap().to_string(), "fdaa:0:1::1");
        assert_eq!(
            plan.machine_address(1, 2).unwrap().to_string(),
            "fdaa:0:1::2"
        );
        assert_eq!(plan.site_prefix(), ("fdaa::".parse().unwrap(), 32));
    }

    #[test]
    fn addresses_stay_inside_their_prefixes() {
        let plan = AddressPlan::new(0x7e57);
        let (subnet, len) = plan.app_subnet(0xbeef).unwrap();
        assert_eq!((subnet.to_string().as_str(), len), ("fdaa:7e57:beef::", 64));
        let big = plan.machine_address(0xbeef, 0x1_0002).unwrap();
        assert_eq!(big.to_string(), "fdaa:7e57:beef::1:2");
        assert_eq!(plan.network_of(big), Some(0xbeef));
        assert_eq!(plan.machine_of(big), Some((0xbeef, 0x1_0002)));
        assert_eq!(plan.machine_of(plan.gateway(0xbeef).unwrap()), None);
        assert_eq!(plan.machine_of(plan.service_address()), None);
        let (prefix, len) = plan.app_prefix(0xbeef).unwrap();
        assert_eq!((prefix.to_string().as_str(), len), ("fdaa:7e57:beef::", 48));
        assert_eq!(plan.network_of(plan.service_address()), None);
        assert_eq!(
            plan.network_of(AddressPlan::new(1).gateway(5).unwrap()),
            None
        );
        assert_eq!(plan.network_of(Ipv6Addr::LOCALHOST), None);
        assert!(plan.machine_address(1, 1).is_err());
        assert!(plan.gateway(0).is_err());
    }

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        let plan = AddressPlan::new(0xffff);
        let bridge = plan.bridge_name(0xffff);
        assert_eq!(bridge, "rb-ffff-ffff");
        assert_eq!(plan.input_chain(), "ROOST-IN-ffff");
        assert!(bridge.len() <= MAX_IFNAME);
        assert_eq!(plan.network_of_bridge(&bridge), Some(0xffff));
        assert_eq!(plan.network_of_bridge("rb-fffe-0001"), None);
        assert_eq!(plan.network_of_bridge("rb-ffff-0000"), None);
        assert_eq!(plan.network_of_bridge("rb-ffff-00011"), None);
        assert_eq!(veth_name("0123456789abcd"), "v0123456789abcd");
        let long = veth_name("a-much-longer-machine-identifier");
        assert_eq!(long.len(), MAX_IFNAME);
        assert_eq!(long, veth_name("a-much-longer-machine-identifier"));
        assert_ne!(long, veth_name("a-much-longer-machine-identifiex"));
    }
}
