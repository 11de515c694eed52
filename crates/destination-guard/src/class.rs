//! Address classes egress never reaches: pure arithmetic on addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is out of reach. Each names what lives there, so a
/// refusal tells a robot why retrying or another name will not help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `127.0.0.0/8`, `::1`: the host's loopback, where its private
    /// services listen.
    Loopback,
    /// `0.0.0.0/8`, `::`: connecting there reaches the host itself.
    Unspecified,
    /// Any address of the host's own interfaces (its uplink, an app's
    /// gateway, the service address): dialing it is local delivery, which
    /// no input filter sees.
    HostAddress,
    /// `169.254.0.0/16`, `fe80::/10`: link-local, where cloud metadata
    /// services (`169.254.169.254`) answer.
    LinkLocal,
    /// `10/8`, `172.16/12`, `192.168/16`.
    PrivateIpv4,
    /// `100.64.0.0/10`: carrier-grade NAT space, and some clouds' metadata
    /// (`100.100.100.200`).
    SharedIpv4,
    /// The roost site's prefix outside the caller's own app: other apps'
    /// machines and roost's own service network.
    OtherApp,
    /// `fc00::/7` outside the site: private IPv6 networks, other roost
    /// sites on this host, AWS's metadata at `fd00:ec2::254`.
    UniqueLocal,
    /// Multicast and broadcast.
    Multicast,
    /// Reserved and deprecated ranges no service should be reached on:
    /// `192.0.0.0/24`, `240.0.0.0/4`, `fec0::/10`.
    Reserved,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Loopback => "the host's loopback",
            Class::Unspecified => "the unspecified address, which is the host itself",
            Class::HostAddress => "an address of this host",
            Class::LinkLocal => "link-local (cloud metadata services answer there)",
            Class::PrivateIpv4 => "an IPv4 private range (10/8, 172.16/12, 192.168/16)",
            Class::SharedIpv4 => "IPv4 shared address space (100.64/10)",
            Class::OtherApp => "roost's private network outside the caller's own app",
            Class::UniqueLocal => {
                "an IPv6 unique-local address (fc00::/7) outside the caller's app"
            }
            Class::Multicast => "a multicast or broadcast address",
            Class::Reserved => "a reserved address range",
        })
    }
}

/// An IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: Ipv6Addr,
    len: u8,
}

impl Prefix {
    /// The prefix of length `len` (at most 128) holding `addr`; the bits
    /// after the prefix are cleared.
    pub fn new(addr: Ipv6Addr, len: u8) -> Prefix {
        let len = len.min(128);
        Prefix {
            addr: Ipv6Addr::from(u128::from(addr) & mask(len)),
            len,
        }
    }

    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        u128::from(addr) & mask(self.len) == u128::from(self.addr)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        len => u128::MAX << (128 - u32::from(len)),
    }
}

/// The class of `addr` that egress must not reach, given the site's
/// prefix and the caller's own app prefix (inside which the site is open);
/// `None` for an address egress may reach. The host's own addresses are
/// not known here (see `HostAddresses`).
pub(crate) fn classify(addr: IpAddr, site: Option<Prefix>, own: Option<Prefix>) -> Option<Class> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6, site, own),
    }
}

fn classify_v4(addr: Ipv4Addr) -> Option<Class> {
    let [a, b, c, _] = addr.octets();
    if a == 0 {
        Some(Class::Unspecified)
    } else if addr.is_loopback() {
        Some(Class::Loopback)
    } else if addr.is_link_local() {
        Some(Class::LinkLocal)
    } else if addr.is_private() {
        Some(Class::PrivateIpv4)
    } else if a == 100 && (64..128).contains(&b) {
        Some(Class::SharedIpv4)
    } else if addr.is_multicast() || addr.is_broadcast() {
        Some(Class::Multicast)
    } else if a >= 240 || (a == 192 && b == 0 && c == 0) {
        Some(Class::Reserved)
    } else {
        None
    }
}

fn classify_v6(addr: Ipv6Addr, site: Option<Prefix>, own: Option<Prefix>) -> Option<Class> {
    if let Some(v4) = embedded_v4(addr) {
        return classify_v4(v4);
    }
    let first = addr.segments()[0];
    if addr.is_unspecified() {
        Some(Class::Unspecified)
    } else if addr.is_loopback() {
        Some(Class::Loopback)
    } else if own.is_some_and(|own| own.contains(addr)) {
        None
    } else if site.is_some_and(|site| site.contains(addr)) {
        Some(Class::OtherApp)
    } else if first & 0xfe00 == 0xfc00 {
        Some(Class::UniqueLocal)
    } else if first & 0xffc0 == 0xfe80 {
        Some(Class::LinkLocal)
    } else if first & 0xffc0 == 0xfec0 {
        Some(Class::Reserved)
    } else if addr.is_multicast() {
        Some(Class::Multicast)
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address carries to an IPv4 host: mapped
/// (`::ffff:a.b.c.d`, what a dual-stack socket dials as IPv4), the
/// deprecated compatible form (`::a.b.c.d`), NAT64's well-known prefix
/// (`64:ff9b::/96`) and 6to4 (`2002:AABB:CCDD::/48`). A gateway on the way
/// turns each into the IPv4 address, so each is judged as that address.
fn embedded_v4(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = addr.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(mapped) = addr.to_ipv4_mapped() {
        Some(mapped)
    } else if (s[..6] == [0; 6] && u32::from(low) > 1) || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(low)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(addr: &str) -> Option<Class> {
        let site = Prefix::new("fdaa:7e57::".parse().unwrap(), 32);
        let own = Prefix::new("fdaa:7e57:5::".parse().unwrap(), 48);
        classify(addr.parse().unwrap(), Some(site), Some(own))
    }

    #[test]
    fn every_forbidden_class_is_recognised() {
        let cases = [
            ("127.0.0.1", Class::Loopback),
            ("127.255.0.9", Class::Loopback),
            ("::1", Class::Loopback),
            ("0.0.0.0", Class::Unspecified),
            ("0.1.2.3", Class::Unspecified),
            ("::", Class::Unspecified),
            ("169.254.169.254", Class::LinkLocal),
            ("fe80::1", Class::LinkLocal),
            ("febf::1", Class::LinkLocal),
            ("10.0.0.1", Class::PrivateIpv4),
            ("172.16.0.1", Class::PrivateIpv4),
            ("172.31.255.255", Class::PrivateIpv4),
            ("192.168.1.1", Class::PrivateIpv4),
            ("100.64.0.1", Class::SharedIpv4),
            ("100.100.100.200", Class::SharedIpv4),
            ("fdaa:7e57::3", Class::OtherApp),
            ("fdaa:7e57:6::2", Class::OtherApp),
            ("fdaa:7e58:5::2", Class::UniqueLocal),
            ("fd00:ec2::254", Class::UniqueLocal),
            ("fc00::1", Class::UniqueLocal),
            ("224.0.0.1", Class::Multicast),
            ("255.255.255.255", Class::Multicast),
            ("ff02::1", Class::Multicast),
            ("240.0.0.1", Class::Reserved),
            ("192.0.0.170", Class::Reserved),
            ("fec0::1", Class::Reserved),
        ];
        for (addr, expected) in cases {
            assert_eq!(class(addr), Some(expected), "{addr}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        assert_eq!(class("::ffff:127.0.0.1"), Some(Class::Loopback));
        assert_eq!(class("::ffff:10.1.2.3"), Some(Class::PrivateIpv4));
        assert_eq!(class("::169.254.169.254"), Some(Class::LinkLocal));
        assert_eq!(class("64:ff9b::a9fe:a9fe"), Some(Class::LinkLocal));
        assert_eq!(class("64:ff9b::7f00:1"), Some(Class::Loopback));
        assert_eq!(class("2002:c0a8:101::1"), Some(Class::PrivateIpv4));
        assert_eq!(class("2002:7f00:1::1"), Some(Class::Loopback));
        assert_eq!(class("::ffff:192.0.2.10"), None);
        assert_eq!(class("64:ff9b::c000:20a"), None);
    }

    #[test]
    fn public_addresses_and_the_callers_own_app_are_reachable() {
        for addr in [
            "192.0.2.10",
            "198.51.100.7",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "2606:4700::1111",
            "fdaa:7e57:5::2",
            "fdaa:7e57:5:0:0:0:1:2",
        ] {
            assert_eq!(class(addr), None, "{addr}");
        }
        // Without an app of its own, the caller reaches none of the site.
        let site = Prefix::new("fdaa:7e57::".parse().unwrap(), 32);
        assert_eq!(
            classify("fdaa:7e57:5::2".parse().unwrap(), Some(site), None),
            Some(Class::OtherApp)
        );
        // Without a site, the private network is unique-local like any other.
        assert_eq!(
            classify("fdaa:7e57:5::2".parse().unwrap(), None, None),
            Some(Class::UniqueLocal)
        );
    }

    #[test]
    fn prefixes_clear_host_bits_and_match_by_them() {
        let p = Prefix::new("fdaa:7e57:5::9".parse().unwrap(), 48);
        assert_eq!(p.to_string(), "fdaa:7e57:5::/48");
        assert!(p.contains("fdaa:7e57:5:ffff::1".parse().unwrap()));
        assert!(!p.contains("fdaa:7e57:6::1".parse().unwrap()));
        assert!(Prefix::new(Ipv6Addr::LOCALHOST, 0).contains("2001:db8::1".parse().unwrap()));
        assert_eq!(Prefix::new(Ipv6Addr::LOCALHOST, 200).prefix_len(), 128);
    }
}
