//! The kernel side: network namespaces, bridges, veth pairs, addresses,
//! routes and policy rules, over rtnetlink.
//!
//! Every function here is idempotent: it looks at what exists (a link by
//! name, a mounted namespace file) and does only what is missing, and an
//! "already exists" or "no such device" answer from the kernel counts as
//! success where that is the state wanted. The orchestrator's durable
//! operations rely on this: a step interrupted by a crash is simply run
//! again.

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::RouteHeader;
use rtnetlink::packet_route::rule::{RuleAction, RuleMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use crate::plan::{AddressPlan, MACHINE_IFNAME};
use crate::{NetError, PolicyRule, RuleTarget};

const EEXIST: i32 = libc::EEXIST;
const ENODEV: i32 = libc::ENODEV;
const ENOENT: i32 = libc::ENOENT;
/// `statfs` magic of the namespace filesystem: a bind-mounted netns file.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// Who may open unprivileged ICMP ("ping") sockets inside a machine:
/// everyone. Machines lack `CAP_NET_RAW`, so a `ping` that uses ICMP
/// datagram sockets (iputils') works only with this, as in Docker since
/// 20.10. (busybox's `ping` insists on raw sockets and stays refused.)
const PING_GROUP_RANGE: &str = "0 2147483647";

/// Runs `work` on a fresh OS thread with its own single-threaded tokio
/// runtime and waits for it without blocking the caller's runtime.
///
/// Why a fresh thread: entering a machine's network namespace (`setns`) is
/// per thread, and a thread that switched must never run anything else
/// afterwards. A tokio worker or blocking-pool thread is reused for other
/// tasks, so it must never switch; this thread ends when `work` does, and
/// its namespace membership with it.
pub(crate) async fn on_fresh_thread<T, F, Fut>(what: &'static str, work: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetError>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("roost-net-{what}"))
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| NetError::io("cannot start a netlink runtime", e))
                .and_then(|rt| rt.block_on(work()));
            let _ = tx.send(result);
        })
        .map_err(|e| NetError::io("cannot start a network thread", e))?;
    rx.await
        .map_err(|_| NetError::Kernel(format!("the {what} thread panicked")))?
}

/// An rtnetlink connection in the network namespace of the thread that
/// opened it (a netlink socket stays in the namespace it was created in).
pub(crate) struct Rtnl {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Rtnl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Rtnl {
    /// Opens a connection; call inside a tokio runtime.
    pub(crate) fn open() -> Result<Rtnl, NetError> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| NetError::io("cannot open a netlink socket", e))?;
        let task = tokio::spawn(connection);
        Ok(Rtnl { handle, task })
    }

    /// The index of link `name`, if it exists.
    pub(crate) async fn link_index(&self, name: &str) -> Result<Option<u32>, NetError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(Some(link.header.index)),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(nl(format!("cannot look up link {name}"), e)),
        }
    }

    /// Names of every link whose name starts with `prefix`.
    pub(crate) async fn link_names(&self, prefix: &str) -> Result<Vec<String>, NetError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("cannot list links", e))?;
        Ok(links
            .iter()
            .filter_map(|link| {
                link.attributes.iter().find_map(|attr| match attr {
                    LinkAttribute::IfName(name) if name.starts_with(prefix) => Some(name.clone()),
                    _ => None,
                })
            })
            .collect())
    }

    /// Deletes link `name`; a missing link is fine.
    pub(crate) async fn delete_link(&self, name: &str) -> Result<(), NetError> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Err(e) if errno(&e) != Some(ENODEV) => Err(nl(format!("cannot delete link {name}"), e)),
            _ => Ok(()),
        }
    }

    /// Sets link `index` up, optionally attaching it to bridge `controller`.
    async fn set_up(&self, index: u32, controller: Option<u32>) -> Result<(), NetError> {
        let mut link = LinkUnspec::new_with_index(index).up();
        if let Some(bridge) = controller {
            link = link.controller(bridge);
        }
        self.handle
            .link()
            .set(link.build())
            .execute()
            .await
            .map_err(|e| nl(format!("cannot bring up link {index}"), e))
    }

    /// Adds `addr/len` to link `index` without duplicate address detection
    /// (a tentative address is unusable for ~2 s; roost's allocation
    /// already guarantees uniqueness). An existing address is fine.
    async fn add_address(&self, index: u32, addr: Ipv6Addr, len: u8) -> Result<(), NetError> {
        let mut request = self.handle.address().add(index, IpAddr::V6(addr), len);
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        match request.execute().await {
            Err(e) if errno(&e) != Some(EEXIST) => {
                Err(nl(format!("cannot add address {addr}/{len}"), e))
            }
            _ => Ok(()),
        }
    }

    async fn delete_address(&self, index: u32, addr: Ipv6Addr, len: u8) -> Result<(), NetError> {
        let mut request = self.handle.address().add(index, IpAddr::V6(addr), len);
        let message = request.message_mut().clone();
        match self.handle.address().del(message).execute().await {
            Err(e) if !matches!(errno(&e), Some(libc::EADDRNOTAVAIL | ENODEV | ENOENT)) => {
                Err(nl(format!("cannot delete address {addr}/{len}"), e))
            }
            _ => Ok(()),
        }
    }

    /// Creates bridge `name` with the gateway address on it, if missing.
    pub(crate) async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv6Addr,
        len: u8,
    ) -> Result<u32, NetError> {
        if self.link_index(name).await?.is_none() {
            let bridge = rtnetlink::LinkBridge::new(name).build();
            match self.handle.link().add(bridge).execute().await {
                Err(e) if errno(&e) != Some(EEXIST) => {
                    return Err(nl(format!("cannot create bridge {name}"), e))
                }
                _ => {}
            }
        }
        let index = self
            .link_index(name)
            .await?
            .ok_or_else(|| NetError::Kernel(format!("bridge {name} vanished after creation")))?;
        // The bridge's link-local address would otherwise sit in DAD.
        write_sysctl(&format!("net/ipv6/conf/{name}/accept_dad"), "0")?;
        self.add_address(index, gateway, len).await?;
        self.set_up(index, None).await?;
        Ok(index)
    }

    /// Creates the veth pair `host_name` <-> `eth0`, with `eth0` placed
    /// straight into the namespace `netns` and the host side attached to
    /// bridge `bridge` (down; [`Rtnl::ensure_port`] brings it up).
    async fn create_veth(
        &self,
        host_name: &str,
        netns: &OwnedFd,
        bridge: u32,
    ) -> Result<(), NetError> {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(MACHINE_IFNAME)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let veth = LinkMessageBuilder::<rtnetlink::LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_name)
            .controller(bridge)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        match self.handle.link().add(veth).execute().await {
            Err(e) if errno(&e) != Some(EEXIST) => {
                Err(nl(format!("cannot create veth pair {host_name}"), e))
            }
            _ => Ok(()),
        }
    }

    /// Adds (`add`) or deletes a policy rule; a rule that already exists or
    /// is already gone is fine.
    pub(crate) async fn policy_rule(&self, rule: &PolicyRule, add: bool) -> Result<(), NetError> {
        let mut request = self.handle.rule().add().v6().priority(rule.priority);
        request = match rule.target {
            RuleTarget::Main => request
                .table_id(u32::from(RouteHeader::RT_TABLE_MAIN))
                .action(RuleAction::ToTable),
            RuleTarget::Prohibit => request.table_id(0).action(RuleAction::Prohibit),
        };
        if let Some((addr, len)) = rule.to {
            request = request.destination_prefix(addr, len);
        }
        if let Some((addr, len)) = rule.from {
            request = request.source_prefix(addr, len);
        }
        if rule.from_host {
            request = request.input_interface("lo");
        }
        let result = if add {
            request.execute().await
        } else {
            let message: RuleMessage = request.message_mut().clone();
            self.handle.rule().del(message).execute().await
        };
        match result {
            Err(e) if !matches!(errno(&e), Some(EEXIST | ENOENT)) => {
                Err(nl(format!("cannot change policy rule {rule}"), e))
            }
            _ => Ok(()),
        }
    }
}

/// What a machine's interface needs, computed by the caller from the plan.
#[derive(Debug, Clone)]
pub(crate) struct MachineLink {
    pub netns_path: PathBuf,
    pub veth: String,
    pub bridge: String,
    pub address: Ipv6Addr,
    pub gateway: Ipv6Addr,
    pub subnet_len: u8,
}

/// Puts the service address on the host's loopback and installs the
/// policy rules. Runs on a fresh thread in roost's own namespace.
pub(crate) async fn setup_host(
    service: Ipv6Addr,
    rules: Vec<PolicyRule>,
    add: bool,
) -> Result<(), NetError> {
    on_fresh_thread("host", move || async move {
        let rtnl = Rtnl::open()?;
        let lo = rtnl
            .link_index("lo")
            .await?
            .ok_or_else(|| NetError::Kernel("the host has no loopback interface".into()))?;
        if add {
            rtnl.add_address(lo, service, 128).await?;
        } else {
            rtnl.delete_address(lo, service, 128).await?;
        }
        for rule in &rules {
            rtnl.policy_rule(rule, add).await?;
        }
        Ok(())
    })
    .await
}

/// Brings a machine's network to the wanted state: bridge, namespace file,
/// veth pair, address and default route. See the module doc on idempotence.
pub(crate) async fn connect(link: MachineLink) -> Result<(), NetError> {
    on_fresh_thread("connect", move || async move {
        let host = Rtnl::open()?;
        let bridge = host
            .ensure_bridge(&link.bridge, link.gateway, link.subnet_len)
            .await?;
        if !is_netns(&link.netns_path) {
            // A veth left from an earlier namespace of this machine would
            // lead into a namespace that is gone or about to be.
            host.delete_link(&link.veth).await?;
            create_netns(&link.netns_path).await?;
        }
        let netns = open_netns(&link.netns_path)?;
        if host.link_index(&link.veth).await?.is_none() {
            host.create_veth(&link.veth, &netns, bridge).await?;
        }
        let port = host.link_index(&link.veth).await?.ok_or_else(|| {
            NetError::Kernel(format!("veth {} vanished after creation", link.veth))
        })?;
        // A bridge port needs no addresses of its own.
        write_sysctl(&format!("net/ipv6/conf/{}/disable_ipv6", link.veth), "1")?;
        host.set_up(port, Some(bridge)).await?;
        drop(host);

        // From here on this thread is inside the machine's namespace.
        setns(netns.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::io("cannot enter the machine's network namespace", e.into()))?;
        let inner = Rtnl::open()?;
        write_sysctl("net/ipv4/ping_group_range", PING_GROUP_RANGE)?;
        let lo = inner
            .link_index("lo")
            .await?
            .ok_or_else(|| NetError::Kernel("the machine's namespace has no loopback".into()))?;
        inner.set_up(lo, None).await?;
        let eth0 = inner.link_index(MACHINE_IFNAME).await?.ok_or_else(|| {
            NetError::Kernel(format!(
                "{MACHINE_IFNAME} is missing in {}",
                link.netns_path.display()
            ))
        })?;
        write_sysctl(&format!("net/ipv6/conf/{MACHINE_IFNAME}/accept_dad"), "0")?;
        inner
            .add_address(eth0, link.address, link.subnet_len)
            .await?;
        inner.set_up(eth0, None).await?;
        let route = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
            .gateway(link.gateway)
            .output_interface(eth0)
            .build();
        inner
            .handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| nl("cannot add the machine's default route", e))?;
        Ok(())
    })
    .await
}

/// Removes a machine's veth pair and namespace file; missing ones are fine.
pub(crate) async fn disconnect(veth: String, netns_path: PathBuf) -> Result<(), NetError> {
    on_fresh_thread("disconnect", move || async move {
        let host = Rtnl::open()?;
        // Deleting one end deletes both, at once (the namespace's own
        // teardown would take the pair with it too, but asynchronously).
        host.delete_link(&veth).await?;
        remove_netns(&netns_path)
    })
    .await
}

/// Deletes links by name; missing ones are fine.
pub(crate) async fn delete_links(names: Vec<String>) -> Result<(), NetError> {
    on_fresh_thread("delete-links", move || async move {
        let host = Rtnl::open()?;
        for name in &names {
            host.delete_link(name).await?;
        }
        Ok(())
    })
    .await
}

/// Names of the host's links that start with `prefix`.
pub(crate) async fn link_names(prefix: String) -> Result<Vec<String>, NetError> {
    on_fresh_thread("list-links", move || async move {
        Rtnl::open()?.link_names(&prefix).await
    })
    .await
}

/// Whether `path` is a mounted network namespace (not just a leftover file).
pub(crate) fn is_netns(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct it is given; c_path is a valid C string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type as i64 == NSFS_MAGIC
}

/// Creates a new network namespace and bind-mounts it at `path`, so it
/// lives on without any process in it (a stopped machine holds nothing but
/// this mount). The unshare happens on a thread of its own that exits right
/// after, so no thread of roost stays in the new namespace.
async fn create_netns(path: &Path) -> Result<(), NetError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| NetError::io(format!("cannot create {}", dir.display()), e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map_err(|e| NetError::io(format!("cannot create {}", path.display()), e))?;
    let target = path.to_owned();
    let joined = std::thread::Builder::new()
        .name("roost-net-unshare".into())
        .spawn(move || -> Result<(), NetError> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetError::io("cannot create a network namespace", e.into()))?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| NetError::io(format!("cannot bind-mount {}", target.display()), e.into()))
        })
        .map_err(|e| NetError::io("cannot start a network thread", e))?
        .join();
    joined.map_err(|_| NetError::Kernel("the namespace thread panicked".into()))?
}

fn open_netns(path: &Path) -> Result<OwnedFd, NetError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| NetError::io(format!("cannot open {}", path.display()), e))?;
    Ok(file.into())
}

/// Unmounts and deletes a namespace file; the namespace ends when its last
/// user (the mount, a process, a socket) is gone.
pub(crate) fn remove_netns(path: &Path) -> Result<(), NetError> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(NetError::io(
                format!("cannot unmount {}", path.display()),
                e.into(),
            ))
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(NetError::io(format!("cannot remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// Writes `/proc/sys/<key>` of the calling thread's network namespace
/// (`/proc/sys/net` follows the namespace of the task that opens it).
fn write_sysctl(key: &str, value: &str) -> Result<(), NetError> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value)
        .map_err(|e| NetError::io(format!("cannot write {}", path.display()), e))
}

fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|code| -code.get()),
        _ => None,
    }
}

fn nl(what: impl Into<String>, err: rtnetlink::Error) -> NetError {
    NetError::Netlink {
        what: what.into(),
        source: Box::new(err),
    }
}

/// The plan's names and addresses for one machine.
pub(crate) fn machine_link(
    plan: &AddressPlan,
    netns_path: PathBuf,
    machine_id: &str,
    network: u16,
    address: Ipv6Addr,
) -> Result<MachineLink, NetError> {
    let (_, subnet_len) = plan.app_subnet(network)?;
    Ok(MachineLink {
        netns_path,
        veth: crate::plan::veth_name(machine_id),
        bridge: plan.bridge_name(network),
        address,
        gateway: plan.gateway(network)?,
        subnet_len,
    })
}
