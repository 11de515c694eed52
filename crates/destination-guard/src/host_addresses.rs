//! The host's own interface addresses, listed at most once a second.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a listing of the host's addresses is used before the next.
/// Addresses come and go rarely (an app's first machine adds its gateway);
/// a connection to one added within this window is still caught after the
/// connect (`Guard::connect`).
const MAX_AGE: Duration = Duration::from_secs(1);

/// The host's addresses, refreshed when older than [`MAX_AGE`].
#[derive(Debug, Default)]
pub(crate) struct HostAddresses {
    listed: Mutex<Option<(Instant, HashSet<IpAddr>)>>,
}

impl HostAddresses {
    /// Whether `ip` is an address of one of the host's interfaces.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = listed
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < MAX_AGE);
        if !fresh {
            *listed = Some((Instant::now(), list()));
        }
        listed
            .as_ref()
            .is_some_and(|(_, addresses)| addresses.contains(&ip))
    }

    /// Makes the next [`HostAddresses::contains`] list the addresses anew.
    pub(crate) fn refresh(&self) {
        *self.listed.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    #[cfg(test)]
    pub(crate) fn insert_for_test(&self, ip: IpAddr) {
        let _ = self.contains(ip);
        let mut listed = self.listed.lock().unwrap();
        let (at, addresses) = listed.as_mut().expect("listed above");
        *at = Instant::now() + Duration::from_secs(3600);
        addresses.insert(ip);
    }
}

/// Every address of every interface (`getifaddrs`); an empty set, logged,
/// when the kernel refuses: the other classes and the connected-socket
/// check still hold.
fn list() -> HashSet<IpAddr> {
    match nix::ifaddrs::getifaddrs() {
        Ok(interfaces) => interfaces
            .filter_map(|interface| interface.address)
            .filter_map(|address| {
                address
                    .as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot list the host's addresses");
            HashSet::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_loopback_is_listed() {
        let addresses = HostAddresses::default();
        assert!(addresses.contains("127.0.0.1".parse().unwrap()));
        assert!(!addresses.contains("192.0.2.200".parse().unwrap()));
    }
}
