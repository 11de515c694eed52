//! UDP services: a socket bound to one app and public port, whose
//! datagrams go to machines' `udp` services on that port.
//!
//! UDP has no connections, so the proxy makes its own: the datagrams from
//! one client address (IP and port) form a *flow*. The first datagram of
//! a flow routes it as a TCP connection is routed (least loaded machine
//! below its soft limit, else autostart, else below its hard limit, else
//! queueing; cordoned machines and failing checks are skipped), and the
//! flow's datagrams then go to that machine through the flow's own
//! connected socket to `<private IP>:<internal_port>`. So the machine sees
//! one peer per client and the proxy knows whose reply is whose: replies
//! are sent to the client from the listening socket, the address the
//! client wrote to.
//!
//! A flow is one unit of its machine's load (so autostop leaves the
//! machine alone) until no datagram passes either way for the port's
//! `http_options.idle_timeout` or [`ProxyConfig::udp_flow_idle`], or the
//! machine answers with an ICMP error (port unreachable: its program does
//! not listen, because it is still starting or has died). Then the flow
//! ends, and the client's next datagram starts a new flow, routed afresh.
//!
//! Everything is bounded: at most [`ProxyConfig::max_udp_flows`] flows per
//! listener (datagrams of further clients are dropped, logged at most
//! every [`OVERFLOW_LOG_EVERY`]); one task per flow; while a flow's
//! machine is chosen or started, at most [`MAX_PENDING`] of its datagrams
//! ([`MAX_PENDING_BYTES`]) wait, and later ones are dropped. Datagrams
//! are never retransmitted: a dropped one is lost, as on any UDP path.
//!
//! [`ProxyConfig::udp_flow_idle`]: crate::ProxyConfig::udp_flow_idle
//! [`ProxyConfig::max_udp_flows`]: crate::ProxyConfig::max_udp_flows

use crate::route::Listen;
use crate::Shared;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// Datagrams a flow holds while its machine is chosen or started.
const MAX_PENDING: usize = 64;
/// Bytes a flow holds while its machine is chosen or started: with the
/// flow cap, this bounds what a flood of large datagrams can pin.
const MAX_PENDING_BYTES: usize = 128 * 1024;
/// Larger than any UDP payload.
const MAX_DATAGRAM: usize = 65_536;
/// Replies relayed per wake-up, so a machine flooding one flow cannot
/// keep its task from yielding.
const MAX_REPLIES_PER_WAKE: usize = 64;
/// How long a flow that found no machine keeps dropping its client's
/// datagrams before the next one is routed (and logged) again.
const FAILED_FLOW_HOLD: Duration = Duration::from_secs(1);
/// Least time between two log lines about the flow cap.
const OVERFLOW_LOG_EVERY: Duration = Duration::from_secs(10);

/// What the listener and a flow's task share.
struct Link {
    /// Milliseconds since [`Flows::epoch`] of the last datagram either way.
    last_ms: AtomicU64,
    /// Notified when sending to the machine failed (an ICMP error): the
    /// flow ends.
    failed: Notify,
}

impl Link {
    /// Sends a client's datagram to the machine without waiting: when the
    /// socket's buffer is full the datagram is dropped, as a congested link
    /// would drop it.
    fn forward(&self, upstream: &UdpSocket, datagram: &[u8]) {
        match upstream.try_send(datagram) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                tracing::debug!("UDP datagram to machine dropped: send buffer full");
            }
            Err(err) => {
                tracing::debug!(error = %err, "UDP datagram to machine failed");
                self.failed.notify_one();
            }
        }
    }
}

/// Where a flow's datagrams from the client go.
enum Upstream {
    /// The machine is being chosen (or started): datagrams wait.
    Pending {
        queue: VecDeque<Bytes>,
        bytes: usize,
    },
    /// The flow's socket connected to the machine.
    Ready(Arc<UdpSocket>),
}

struct Flow {
    upstream: Upstream,
    link: Arc<Link>,
}

/// The live flows of one listener, by client address. An entry exists
/// exactly while its flow's task does (see [`Membership`]).
struct Flows {
    map: Mutex<HashMap<SocketAddr, Flow>>,
    epoch: Instant,
}

impl Flows {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self, link: &Link) {
        link.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Flow>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the datagrams `peer`'s flow held while routing to `upstream`,
    /// in order, and from now on the listener sends the flow's datagrams
    /// there itself. Under the table's lock, so a newer datagram cannot
    /// overtake the held ones.
    fn connect(&self, peer: SocketAddr, upstream: &Arc<UdpSocket>) {
        let mut map = self.lock();
        let Some(flow) = map.get_mut(&peer) else {
            return;
        };
        self.touch(&flow.link);
        let ready = Upstream::Ready(upstream.clone());
        if let Upstream::Pending { queue, .. } = std::mem::replace(&mut flow.upstream, ready) {
            for datagram in queue {
                flow.link.forward(upstream, &datagram);
            }
        }
    }
}

/// A flow's place in the table, given up when its task ends however it
/// ends (including being aborted when the listener stops), so the table
/// never holds a flow nobody serves.
struct Membership {
    flows: Arc<Flows>,
    peer: SocketAddr,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.flows.lock().remove(&self.peer);
    }
}

/// Datagrams dropped because the flow table is full, logged at most every
/// [`OVERFLOW_LOG_EVERY`] so a flood of clients does not flood the log.
#[derive(Default)]
struct Overflow {
    dropped: u64,
    logged: Option<Instant>,
}

impl Overflow {
    fn drop_datagram(&mut self, app: &str, peer: SocketAddr, max_flows: usize) {
        self.dropped += 1;
        if self
            .logged
            .is_some_and(|t| t.elapsed() < OVERFLOW_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            app,
            %peer,
            max_flows,
            dropped = self.dropped,
            "UDP datagrams of new clients dropped: the listener has its maximum of flows"
        );
        self.dropped = 0;
        self.logged = Some(Instant::now());
    }
}

/// Receives datagrams on `socket` for `app`'s `udp` services on public
/// port `port` until `shutdown` resolves, then ends every flow.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    socket: UdpSocket,
    app: Arc<str>,
    port: u16,
    shutdown: impl Future<Output = ()> + Send,
) {
    let socket = Arc::new(socket);
    let listen = Listen::Udp { port };
    let flows = Arc::new(Flows {
        map: Mutex::default(),
        epoch: Instant::now(),
    });
    let max_flows = shared.config.max_udp_flows;
    // Dropped when serving ends, which aborts every flow's task.
    let mut tasks = tokio::task::JoinSet::new();
    let mut overflow = Overflow::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    tokio::pin!(shutdown);
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.as_mut() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(err) => {
                    tracing::warn!(app = %app, error = %err, "UDP receive failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let datagram = &buf[..n];
        let mut map = flows.lock();
        if let Some(flow) = map.get_mut(&peer) {
            flows.touch(&flow.link);
            match &mut flow.upstream {
                Upstream::Ready(upstream) => flow.link.forward(upstream, datagram),
                Upstream::Pending { queue, bytes }
                    if queue.len() < MAX_PENDING && *bytes + n <= MAX_PENDING_BYTES =>
                {
                    queue.push_back(Bytes::copy_from_slice(datagram));
                    *bytes += n;
                }
                Upstream::Pending { .. } => {
                    tracing::debug!(app = %app, %peer, "UDP datagram dropped: its flow's machine is not chosen yet and enough datagrams wait");
                }
            }
            continue;
        }
        if map.len() >= max_flows {
            drop(map);
            overflow.drop_datagram(&app, peer, max_flows);
            continue;
        }
        let link = Arc::new(Link {
            last_ms: AtomicU64::new(flows.now_ms()),
            failed: Notify::new(),
        });
        let flow = Flow {
            upstream: Upstream::Pending {
                queue: VecDeque::from([Bytes::copy_from_slice(datagram)]),
                bytes: n,
            },
            link: link.clone(),
        };
        map.insert(peer, flow);
        drop(map);
        let member = Membership {
            flows: flows.clone(),
            peer,
        };
        let (shared, app, listen, socket) =
            (shared.clone(), app.clone(), listen.clone(), socket.clone());
        tasks.spawn(run(shared, app, listen, socket, member, link));
        while tasks.try_join_next().is_some() {}
    }
}

/// One flow: routes it, connects to the machine and relays the machine's
/// replies to the client until the flow ends.
async fn run(
    shared: Arc<Shared>,
    app: Arc<str>,
    listen: Listen,
    socket: Arc<UdpSocket>,
    member: Membership,
    link: Arc<Link>,
) {
    let peer = member.peer;
    let Some(picked) = shared.router.route_or_log(&app, &listen, "UDP flow").await else {
        tokio::time::sleep(FAILED_FLOW_HOLD).await;
        return;
    };
    let id = picked.backend.id().to_string();
    let Some(addr) = picked.upstream() else {
        tracing::warn!(app = %app, machine = %id, "machine has no private IP address");
        return;
    };
    let upstream = match connect(addr, shared.config.udp_socket_mark).await {
        Ok(upstream) => Arc::new(upstream),
        Err(err) => {
            tracing::warn!(app = %app, machine = %id, %addr, error = %err, "cannot open a UDP socket to machine");
            return;
        }
    };
    let flows = &member.flows;
    flows.connect(peer, &upstream);
    let idle = picked.idle_timeout(shared.config.udp_flow_idle);
    let ended = relay(flows, &link, &upstream, &socket, peer, idle).await;
    tracing::debug!(app = %app, machine = %id, %peer, reason = %ended, "UDP flow ended");
    drop(picked);
}

/// A socket connected to the machine, from an ephemeral port, carrying
/// `mark` (`SO_MARK`) if one is given, ready for the non-blocking sends of
/// [`Link::forward`] (a new socket counts as not writable until the
/// runtime has polled it once).
async fn connect(addr: SocketAddr, mark: Option<u32>) -> io::Result<UdpSocket> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    if let Some(mark) = mark {
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Mark, &mark)?;
    }
    socket.connect(addr).await?;
    socket.writable().await?;
    Ok(socket)
}

/// Relays replies until the flow is idle for `idle` or the machine
/// answers with an error; returns why the flow ended.
async fn relay(
    flows: &Flows,
    link: &Link,
    upstream: &UdpSocket,
    socket: &UdpSocket,
    peer: SocketAddr,
    idle: Duration,
) -> io::Error {
    loop {
        let last = Duration::from_millis(link.last_ms.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::from_std(flows.epoch + last + idle);
        tokio::select! {
            _ = link.failed.notified() => {
                return io::Error::other("the machine answered a datagram with an error");
            }
            _ = tokio::time::sleep_until(deadline) => {
                let last = Duration::from_millis(link.last_ms.load(Ordering::Relaxed));
                if flows.epoch.elapsed() >= last + idle {
                    return io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no datagram for {idle:?} (idle timeout)"),
                    );
                }
            }
            // An ICMP error (port unreachable) makes the socket report an
            // error, not readability.
            ready = upstream.ready(Interest::READABLE | Interest::ERROR) => {
                let ready = match ready {
                    Ok(ready) => ready,
                    Err(err) => return err,
                };
                if ready.is_error() {
                    return upstream.take_error().ok().flatten().unwrap_or_else(|| {
                        io::Error::other("the socket to the machine reported an error")
                    });
                }
                if let Err(err) = relay_replies(flows, link, upstream, socket, peer) {
                    return err;
                }
            }
        }
    }
}

/// Sends the replies the machine has sent so far to the client, without
/// waiting: a reply that does not fit the listening socket's buffer is
/// dropped.
fn relay_replies(
    flows: &Flows,
    link: &Link,
    upstream: &UdpSocket,
    socket: &UdpSocket,
    peer: SocketAddr,
) -> io::Result<()> {
    let mut buf = [0u8; MAX_DATAGRAM];
    for _ in 0..MAX_REPLIES_PER_WAKE {
        let n = match upstream.try_recv(&mut buf) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(err) => return Err(err),
        };
        flows.touch(link);
        if let Err(err) = socket.try_send_to(&buf[..n], peer) {
            tracing::debug!(%peer, error = %err, "UDP reply to client dropped");
        }
    }
    Ok(())
}
