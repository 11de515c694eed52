//! The private network on the real kernel: namespaces, bridges, veth pairs,
//! isolation rules. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN), like roost.
//! Each test uses its own random site and namespace dir, and tears
//! everything down even when it fails.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use roost_net::plan::SERVICE_TOKENIZER_PORT;
use roost_net::{firewall, MachineNet, NetConfig, Network};

/// Removes the site from the host when dropped, also on panic.
struct Site {
    net: Network,
    _dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = loop {
            let candidate = (std::process::id() as u16) ^ (rand_u16() | 0x8000);
            let prefix = format!("/sys/class/net/rb-{candidate:04x}-0001");
            if !Path::new(&prefix).exists() {
                break candidate;
            }
        };
        let net = Network::new(NetConfig {
            site,
            netns_dir: dir.path().join("netns"),
            ..NetConfig::default()
        })
        .expect("network");
        Site { net, _dir: dir }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Err(err) = self.net.teardown_blocking() {
            eprintln!("teardown failed: {err}");
        }
    }
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}

fn machine(id: &str, network: u16, slot: u32) -> MachineNet {
    MachineNet {
        machine_id: id.to_string(),
        network,
        slot,
    }
}

/// Runs `f` on a thread inside the network namespace at `path`.
fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(path).expect("open netns");
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// A TCP server answering "hi" to each connection on `addr`, `port` (0:
/// any), in `netns` (or on the host), until dropped with the thread.
fn serve(netns: Option<&Path>, addr: Ipv6Addr, port: u16) -> SocketAddr {
    let bind = move || {
        let listener = TcpListener::bind((addr, port)).expect("bind");
        let local = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let _ = stream.write_all(b"hi");
            }
        });
        local
    };
    match netns {
        Some(path) => in_netns(path, bind),
        None => bind(),
    }
}

/// Whether a connection from `netns` (or the host) to `to` gets "hi".
fn reaches(net: &Network, from: Option<&str>, to: SocketAddr) -> bool {
    matches!(talk(net, from, to), Ok(true))
}

/// Connects from `netns` (or the host) to `to`: whether it said "hi".
fn talk(net: &Network, from: Option<&str>, to: SocketAddr) -> std::io::Result<bool> {
    let attempt = move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut buf = [0u8; 2];
            s.read_exact(&mut buf)?;
            Ok(buf == *b"hi")
        })
    };
    match from {
        Some(id) => in_netns(&net.netns_path(id), attempt),
        None => attempt(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn machines_of_one_app_meet_other_apps_are_isolated() {
    let site = Site::new();
    let net = &site.net;
    net.setup_host().await.expect("setup host");
    net.setup_host().await.expect("setup host twice");
    let filter = || firewall::installed(net.plan());
    let once = firewall::Installed {
        chain: true,
        jumps: 1,
    };
    assert_eq!(filter().await.expect("input filter"), once);
    let (a1, a2, b1) = (
        machine("aaaaaaaaaaaa01", 1, 2),
        machine("aaaaaaaaaaaa02", 1, 3),
        machine("bbbbbbbbbbbb01", 2, 2),
    );
    for m in [&a1, &a2, &b1] {
        net.connect(m).await.expect("connect");
        assert!(net.is_connected(&m.machine_id));
    }
    // Idempotent: a repeated connect (a resumed operation) changes nothing.
    net.connect(&a1).await.expect("connect again");

    let a2_addr = net.address(&a2).unwrap();
    let server = serve(Some(&net.netns_path(&a2.machine_id)), a2_addr, 0);
    assert!(reaches(net, Some(&a1.machine_id), server), "same app");
    assert!(reaches(net, None, server), "host to machine");
    assert!(!reaches(net, Some(&b1.machine_id), server), "other app");

    // The service address answers every machine, on roost's service ports.
    let service = serve(None, net.service_address(), SERVICE_TOKENIZER_PORT);
    assert!(reaches(net, Some(&a1.machine_id), service));
    assert!(reaches(net, Some(&b1.machine_id), service));

    // No other service of the host does, on any of its addresses: the
    // input filter refuses at once (ICMPv6 "prohibited": EACCES).
    let wildcard = serve(None, Ipv6Addr::UNSPECIFIED, 0).port();
    let gateway = net.plan().gateway(a1.network).unwrap();
    for to in [gateway, net.service_address()] {
        let refused = talk(
            net,
            Some(&a1.machine_id),
            SocketAddr::new(to.into(), wildcard),
        );
        assert_eq!(
            refused.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::PermissionDenied),
            "a machine reached [{to}]:{wildcard}"
        );
    }
    let gateway = SocketAddr::new(gateway.into(), wildcard);
    assert!(
        reaches(net, None, gateway),
        "the host reaches its own service"
    );

    // Inside: eth0 holds the machine's own address, and only that.
    let (b1_addr, a2_copy) = (net.address(&b1).unwrap(), a2_addr);
    let (own, foreign) = in_netns(&net.netns_path(&b1.machine_id), move || {
        (
            std::net::UdpSocket::bind((b1_addr, 0)).is_ok(),
            std::net::UdpSocket::bind((a2_copy, 0)).is_ok(),
        )
    });
    assert!(own && !foreign, "b1 holds exactly its address");

    // Destroy: namespace file and veth are gone; a repeat is fine.
    net.disconnect(&a1.machine_id).await.expect("disconnect");
    net.disconnect(&a1.machine_id)
        .await
        .expect("disconnect twice");
    assert!(!net.netns_path(&a1.machine_id).exists());
    assert!(!Path::new(&format!("/sys/class/net/v{}", a1.machine_id)).exists());

    // A lost namespace (reboot) is recreated by connect, veth included.
    nix::mount::umount2(
        &net.netns_path(&a2.machine_id),
        nix::mount::MntFlags::MNT_DETACH,
    )
    .expect("umount");
    assert!(!net.is_connected(&a2.machine_id));
    net.connect(&a2).await.expect("reconnect");
    let server = serve(Some(&net.netns_path(&a2.machine_id)), a2_addr, 0);
    assert!(
        reaches(net, None, server),
        "host reaches the recreated machine"
    );

    // Orphans: b1 and app network 2 are unknown to the caller now.
    net.remove_orphans(|id| id == a2.machine_id, |n| n == 1)
        .await
        .expect("remove orphans");
    assert!(!net.netns_path(&b1.machine_id).exists());
    assert_eq!(net.bridged_networks().await.unwrap(), [1]);
    net.remove_app(1).await.expect("remove app");
    net.remove_app(1).await.expect("remove app twice");
    assert!(net.bridged_networks().await.unwrap().is_empty());

    // Teardown takes the input filter along; a repeat is fine.
    net.teardown().await.expect("teardown");
    net.teardown().await.expect("teardown twice");
    let gone = firewall::Installed {
        chain: false,
        jumps: 0,
    };
    assert_eq!(filter().await.expect("input filter"), gone);
}
