//! The destinations a proxy dialing on behalf of a machine must never
//! reach, whatever the caller's policy or secret says: the host's
//! loopback and its own addresses, link-local and metadata addresses, the
//! IPv4 private ranges, and the roost site's private network outside the
//! caller's own app.
//!
//! Why one crate: roost has two such proxies, the egress proxy and the
//! tokenizer, and an SSRF hole in either is the same hole. Both dial
//! through [`Guard::connect`], so both apply one rule, in one place.
//!
//! The rule is applied to addresses, after DNS resolution, and the
//! connection goes to the address that was checked (no second lookup), so
//! a name that resolves to `127.0.0.1` is refused like the literal, and a
//! name cannot change its answer between the check and the dial (DNS
//! rebinding). An operator names exceptions as exact `addr:port` pairs
//! ([`GuardConfig::allowed`]); tests reach their loopback upstreams that
//! way.
//!
//! ```no_run
//! # async fn example() -> Result<(), roost_destination_guard::GuardError> {
//! use roost_destination_guard::{Guard, GuardConfig, Origin};
//! let guard = Guard::new(GuardConfig::default());
//! let connected = guard
//!     .connect(Origin::Host, "example.com", 443, std::time::Duration::from_secs(10))
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod class;
mod host_addresses;

pub use class::{Class, Prefix};

use host_addresses::HostAddresses;
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Upper bound on one name lookup.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The roost site the guard protects, in the shape of roost's address plan
/// (`roost_net::plan`): one prefix holds every private address, each app
/// owns a longer prefix inside it, and the site's first such prefix
/// (network 0) is roost's own, holding the service address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// Every address of the site (`fdaa:S::/32`).
    pub prefix: Prefix,
    /// Length of one app's prefix in it (48: `fdaa:S:N::/48`).
    pub app_prefix_len: u8,
}

/// What the guard lets through besides public addresses.
#[derive(Debug, Clone, Default)]
pub struct GuardConfig {
    /// The roost site; without one, all of `fc00::/7` is out of reach.
    pub site: Option<Site>,
    /// Destinations reachable whatever their class: exact address and
    /// port (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub allowed: Vec<SocketAddr>,
}

/// Who a connection is made for, which decides what of the site is its
/// own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The host, or a caller the guard cannot place in an app: none of the
    /// site is its own.
    Host,
    /// A machine of the app owning this prefix, which it reaches directly
    /// anyway.
    App(Prefix),
}

/// A destination the guard refused, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub addr: SocketAddr,
    pub class: Class,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}", self.addr.ip(), self.class)
    }
}

/// Why [`Guard::resolve`] or [`Guard::connect`] gave no connection.
/// Messages name the host and what was wrong, and are meant for the
/// machine's program to read.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// Every address of the host is one egress never reaches.
    #[error("{host} is refused: {refusal}, which egress never reaches")]
    Refused { host: String, refusal: Refusal },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot resolve {host}: no answer within {RESOLVE_TIMEOUT:?}")]
    ResolveTimeout { host: String },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    /// Every allowed address failed; the last failure.
    #[error("cannot connect to {host} port {port} ({addr}): {source}")]
    Connect {
        host: String,
        port: u16,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {host} port {port}: no answer within {timeout:?}")]
    ConnectTimeout {
        host: String,
        port: u16,
        timeout: Duration,
    },
}

impl GuardError {
    /// The refusal, when the guard (not the network) said no.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            GuardError::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }
}

/// A connection to an allowed destination.
#[derive(Debug)]
pub struct Connected {
    pub stream: TcpStream,
    /// The address dialed, which the guard checked.
    pub addr: SocketAddr,
}

/// The destination rule. Cheap to clone; clones share one view of the
/// host's addresses.
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    site: Option<Site>,
    allowed: HashSet<SocketAddr>,
    host_addresses: HostAddresses,
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(GuardConfig::default())
    }
}

impl Guard {
    pub fn new(config: GuardConfig) -> Guard {
        Guard {
            inner: Arc::new(Inner {
                site: config.site,
                allowed: config.allowed.into_iter().map(canonical).collect(),
                host_addresses: HostAddresses::default(),
            }),
        }
    }

    /// The origin of a client connecting from `peer`: a machine of an app
    /// when `peer` lies in one of the site's app prefixes, otherwise the
    /// host.
    pub fn origin_of(&self, peer: IpAddr) -> Origin {
        let (Some(site), IpAddr::V6(peer)) = (self.inner.site, peer.to_canonical()) else {
            return Origin::Host;
        };
        let own = Prefix::new(peer, site.app_prefix_len);
        let service_network = Prefix::new(site.prefix.addr(), site.app_prefix_len);
        if site.prefix.contains(peer) && own != service_network {
            Origin::App(own)
        } else {
            Origin::Host
        }
    }

    /// Whether `origin` may reach `addr`.
    pub fn check(&self, origin: Origin, addr: SocketAddr) -> Result<(), Refusal> {
        let addr = canonical(addr);
        if self.inner.allowed.contains(&addr) {
            return Ok(());
        }
        let own = match origin {
            Origin::App(prefix) => Some(prefix),
            Origin::Host => None,
        };
        let site = self.inner.site.map(|site| site.prefix);
        // The host's own addresses after the classes: an app's gateway
        // lies inside the app's prefix, but dialing it is local delivery.
        let class = class::classify(addr.ip(), site, own).or_else(|| {
            self.inner
                .host_addresses
                .contains(addr.ip())
                .then_some(Class::HostAddress)
        });
        match class {
            Some(class) => Err(Refusal { addr, class }),
            None => Ok(()),
        }
    }

    /// The addresses of `host` (a name or an IP literal, IPv6 with or
    /// without brackets) that `origin` may reach at `port`, in the
    /// resolver's order; an error when there are none.
    pub async fn resolve(
        &self,
        origin: Origin,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, GuardError> {
        let found = lookup(host, port).await?;
        let mut allowed = Vec::with_capacity(found.len());
        let mut first_refusal = None;
        for addr in found {
            match self.check(origin, addr) {
                Ok(()) if !allowed.contains(&addr) => allowed.push(addr),
                Ok(()) => {}
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (false, _) => Ok(allowed),
            (true, Some(refusal)) => Err(GuardError::Refused {
                host: host.to_string(),
                refusal,
            }),
            (true, None) => Err(GuardError::NoAddress {
                host: host.to_string(),
            }),
        }
    }

    /// Connects to the first address of `host` that `origin` may reach
    /// and that answers within `timeout` (the whole attempt, lookup
    /// included). The connected socket is checked once more: a kernel
    /// that picked the destination itself as the source address delivered
    /// it locally, so the destination was one of the host's own addresses
    /// (one added since the guard last listed them).
    pub async fn connect(
        &self,
        origin: Origin,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Connected, GuardError> {
        let attempt = async {
            let mut last_error = None;
            for addr in self.resolve(origin, host, port).await? {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        self.check_connected(&stream, addr).map_err(|refusal| {
                            GuardError::Refused {
                                host: host.to_string(),
                                refusal,
                            }
                        })?;
                        return Ok(Connected { stream, addr });
                    }
                    Err(source) => last_error = Some((addr, source)),
                }
            }
            let (addr, source) = last_error.expect("resolve returns at least one address");
            Err(GuardError::Connect {
                host: host.to_string(),
                port,
                addr,
                source,
            })
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(GuardError::ConnectTimeout {
                    host: host.to_string(),
                    port,
                    timeout,
                })
            })
    }

    /// Refuses a connection the kernel delivered locally (see
    /// [`Guard::connect`]), unless its destination is an exception.
    fn check_connected(&self, stream: &TcpStream, addr: SocketAddr) -> Result<(), Refusal> {
        let addr = canonical(addr);
        let local = stream.local_addr().map(|local| local.ip().to_canonical());
        if self.inner.allowed.contains(&addr) || local.map_or(true, |ip| ip != addr.ip()) {
            return Ok(());
        }
        self.inner.host_addresses.refresh();
        Err(Refusal {
            addr,
            class: Class::HostAddress,
        })
    }
}

/// `host`'s addresses: an IP literal as is, a name through the system
/// resolver (bounded by [`RESOLVE_TIMEOUT`]).
async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, GuardError> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let resolve = tokio::net::lookup_host((host.to_string(), port));
    match tokio::time::timeout(RESOLVE_TIMEOUT, resolve).await {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(source)) => Err(GuardError::Resolve {
            host: host.to_string(),
            source,
        }),
        Err(_) => Err(GuardError::ResolveTimeout {
            host: host.to_string(),
        }),
    }
}

/// `addr` with an IPv4-mapped IPv6 address turned into IPv4, and no
/// flow label or scope: the form exceptions are compared in.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allowed: &[&str]) -> Guard {
        Guard::new(GuardConfig {
            site: Some(Site {
                prefix: Prefix::new("fdaa:7e57::".parse().unwrap(), 32),
                app_prefix_len: 48,
            }),
            allowed: allowed.iter().map(|a| a.parse().unwrap()).collect(),
        })
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn origins_are_app_prefixes_of_the_site_and_nothing_else() {
        let g = guard(&[]);
        let app = Prefix::new("fdaa:7e57:5::".parse().unwrap(), 48);
        assert_eq!(
            g.origin_of("fdaa:7e57:5::2".parse().unwrap()),
            Origin::App(app)
        );
        for peer in [
            "fdaa:7e57::3",
            "fdaa:7e58:5::2",
            "127.0.0.1",
            "::1",
            "2001:db8::1",
        ] {
            assert_eq!(g.origin_of(peer.parse().unwrap()), Origin::Host, "{peer}");
        }
        assert_eq!(
            Guard::default().origin_of("fdaa:7e57:5::2".parse().unwrap()),
            Origin::Host
        );
    }

    #[test]
    fn exceptions_are_exact_address_and_port() {
        let g = guard(&["127.0.0.1:8443", "[fdaa:7e57:6::2]:80"]);
        assert!(g.check(Origin::Host, addr("127.0.0.1:8443")).is_ok());
        assert!(g
            .check(Origin::Host, addr("[::ffff:127.0.0.1]:8443"))
            .is_ok());
        assert_eq!(
            g.check(Origin::Host, addr("127.0.0.1:8444"))
                .unwrap_err()
                .class,
            Class::Loopback
        );
        assert!(g.check(Origin::Host, addr("[fdaa:7e57:6::2]:80")).is_ok());
        assert_eq!(
            g.check(Origin::Host, addr("[fdaa:7e57:6::2]:81"))
                .unwrap_err()
                .class,
            Class::OtherApp
        );
    }

    #[test]
    fn a_machine_reaches_its_own_app_but_not_the_host_there() {
        let g = guard(&[]);
        let origin = g.origin_of("fdaa:7e57:5::2".parse().unwrap());
        assert!(g.check(origin, addr("[fdaa:7e57:5::3]:80")).is_ok());
        assert_eq!(
            g.check(origin, addr("[fdaa:7e57:6::3]:80"))
                .unwrap_err()
                .class,
            Class::OtherApp
        );
        assert_eq!(
            g.check(Origin::Host, addr("[fdaa:7e57:5::3]:80"))
                .unwrap_err()
                .class,
            Class::OtherApp
        );
        g.inner
            .host_addresses
            .insert_for_test("fdaa:7e57:5::1".parse().unwrap());
        assert_eq!(
            g.check(origin, addr("[fdaa:7e57:5::1]:22"))
                .unwrap_err()
                .class,
            Class::HostAddress
        );
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let g = guard(&[]);
        let err = g.resolve(Origin::Host, "localhost", 80).await.unwrap_err();
        let refusal = err.refusal().expect("a refusal");
        assert_eq!(refusal.class, Class::Loopback);
        assert!(err.to_string().contains("localhost is refused"), "{err}");
        for literal in ["127.0.0.1", "[::1]", "::1", "0.0.0.0", "169.254.169.254"] {
            let err = g.resolve(Origin::Host, literal, 80).await.unwrap_err();
            assert!(err.refusal().is_some(), "{literal}: {err}");
        }
        // inet_aton's other spellings of loopback resolve to it.
        let err = g.resolve(Origin::Host, "2130706433", 80).await.unwrap_err();
        assert_eq!(
            err.refusal().map(|r| r.class),
            Some(Class::Loopback),
            "{err}"
        );
        let err = g
            .resolve(Origin::Host, "name.invalid", 80)
            .await
            .unwrap_err();
        assert!(matches!(err, GuardError::Resolve { .. }), "{err}");
    }

    #[tokio::test]
    async fn connect_reaches_exceptions_only_and_checks_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let timeout = Duration::from_secs(5);
        let refused = guard(&[])
            .connect(Origin::Host, "localhost", port, timeout)
            .await
            .unwrap_err();
        assert!(refused.refusal().is_some(), "{refused}");

        let allowed = guard(&[&format!("127.0.0.1:{port}")]);
        let connected = allowed
            .connect(Origin::Host, "localhost", port, timeout)
            .await
            .unwrap();
        assert_eq!(connected.addr, addr(&format!("127.0.0.1:{port}")));
        // The kernel delivered it locally: without the exception, the
        // socket check alone would have refused it.
        assert_eq!(
            guard(&[])
                .check_connected(&connected.stream, connected.addr)
                .unwrap_err()
                .class,
            Class::HostAddress
        );
        drop(listener);
        let dead = allowed
            .connect(Origin::Host, "127.0.0.1", port, timeout)
            .await
            .unwrap_err();
        assert!(matches!(dead, GuardError::Connect { .. }), "{dead}");
    }
}
