//! UDP services: flows per client address, routed like TCP connections,
//! to machines whose fake programs echo datagrams (`<id>:<datagram>`).

mod common;

use common::*;
use roost_proxy::{Backends, Proxy, ProxyConfig};
use roost_types::{MachineService, MachineState};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

const PORT: u16 = 5353;

/// A `udp` service on public port [`PORT`].
fn udp_service() -> MachineService {
    service(json!({"protocol": "udp", "internal_port": 0, "ports": [{"port": PORT}]}))
}

/// A UDP listener of `proxy` for `app` on [`PORT`].
async fn listen_udp(proxy: &Proxy, app: &str) -> Serving {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (proxy, app) = (proxy.clone(), app.to_string());
    let task = tokio::spawn(async move {
        proxy
            .serve_udp(socket, &app, PORT, std::future::pending())
            .await
    });
    Serving { addr, task }
}

/// A client socket of its own (so its own flow), talking to `to`.
async fn udp_client(to: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(to).await.unwrap();
    socket
}

/// The next datagram, if one comes within `ms`.
async fn recv_within(socket: &UdpSocket, ms: u64) -> Option<String> {
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(Duration::from_millis(ms), socket.recv(&mut buf))
        .await
        .ok()?
        .expect("recv");
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Sends `message` and returns the reply (within 5 s).
async fn exchange(socket: &UdpSocket, message: &str) -> String {
    socket.send(message.as_bytes()).await.unwrap();
    recv_within(socket, 5000)
        .await
        .unwrap_or_else(|| panic!("no reply to {message:?} within 5s"))
}

/// App `dns` with one machine `m-a`, a proxy with `config` and its UDP
/// listener, and a client.
struct Dns {
    fake: Arc<Fake>,
    server: Arc<Server>,
    running: Running,
    udp: Serving,
    client: UdpSocket,
}

async fn dns(started: bool, config: ProxyConfig) -> Dns {
    let fake = Fake::new();
    let server = fake.add("dns", "m-a", vec![udp_service()], started).await;
    let running = start_proxy(&fake, config).await;
    let udp = listen_udp(&running.proxy, "dns").await;
    let client = udp_client(udp.addr).await;
    Dns {
        fake,
        server,
        running,
        udp,
        client,
    }
}

#[tokio::test]
async fn datagrams_round_trip() {
    let d = dns(true, test_config()).await;
    assert_eq!(exchange(&d.client, "hello").await, "m-a:hello");
    assert_eq!(exchange(&d.client, "again").await, "m-a:again");
    let large = "x".repeat(60_000);
    assert_eq!(exchange(&d.client, &large).await, format!("m-a:{large}"));
    assert_eq!(d.server.datagrams.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn flows_go_to_the_least_loaded_machine_and_stay_there() {
    let fake = Fake::new();
    fake.add("dns", "m-a", vec![udp_service()], true).await;
    fake.add("dns", "m-b", vec![udp_service()], true).await;
    let running = start_proxy(&fake, test_config()).await;
    let udp = listen_udp(&running.proxy, "dns").await;
    let (one, two) = (udp_client(udp.addr).await, udp_client(udp.addr).await);
    let first = exchange(&one, "1").await;
    let second = exchange(&two, "2").await;
    let machine = |reply: &str| reply.split(':').next().unwrap().to_string();
    let (m1, m2) = (machine(&first), machine(&second));
    assert_ne!(m1, m2, "the second flow goes to the idle machine");
    for i in 0..5 {
        assert_eq!(exchange(&one, &i.to_string()).await, format!("{m1}:{i}"));
        assert_eq!(exchange(&two, &i.to_string()).await, format!("{m2}:{i}"));
    }
    assert_eq!(running.proxy.in_flight("m-a"), 1);
    assert_eq!(running.proxy.in_flight("m-b"), 1);
}

#[tokio::test]
async fn a_flow_is_load_until_it_is_idle() {
    let config = ProxyConfig {
        udp_flow_idle: Duration::from_millis(500),
        ..test_config()
    };
    let d = dns(true, config).await;
    assert_eq!(exchange(&d.client, "a").await, "m-a:a");
    assert_eq!(d.running.proxy.in_flight("m-a"), 1);
    // Datagrams more often than the idle timeout keep the flow.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            exchange(&d.client, &i.to_string()).await,
            format!("m-a:{i}")
        );
        assert_eq!(d.running.proxy.in_flight("m-a"), 1, "flow alive at {i}");
    }
    eventually(3, "the idle flow to release its load", || {
        d.running.proxy.in_flight("m-a") == 0
    })
    .await;
    // The d.client's next datagram is a new flow.
    assert_eq!(exchange(&d.client, "b").await, "m-a:b");
    assert_eq!(d.running.proxy.in_flight("m-a"), 1);
}

#[tokio::test]
async fn udp_and_tcp_listeners_reach_only_their_protocol() {
    let fake = Fake::new();
    // A raw TCP service on the UDP listener's port, and nothing else.
    let tcp_only = fake
        .add(
            "tcponly",
            "m-tcp",
            vec![service(
                json!({"internal_port": 0, "ports": [{"port": PORT}]}),
            )],
            true,
        )
        .await;
    // A UDP service on the ports of the HTTP and raw TCP listeners.
    let udp_only = fake
        .add(
            "udponly",
            "m-udp",
            vec![service(json!({
                "protocol": "udp",
                "internal_port": 0,
                "ports": [{"port": 80, "handlers": ["http"]}, {"port": PORT}],
            }))],
            true,
        )
        .await;
    let running = start_proxy(&fake, test_config()).await;

    let udp = listen_udp(&running.proxy, "tcponly").await;
    let client = udp_client(udp.addr).await;
    client.send(b"anyone?").await.unwrap();
    assert_eq!(recv_within(&client, 500).await, None);
    assert_eq!(tcp_only.datagrams.load(Ordering::SeqCst), 0);

    let reply = get(running.addr, "udponly.localhost", "/", &[]).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    let raw = tcp(&running.proxy, "udponly", PORT, None).await;
    let stream = tokio::net::TcpStream::connect(raw.addr).await.unwrap();
    let reply = http10_exchange(stream).await.unwrap_or_default();
    assert_eq!(
        reply, "",
        "the raw TCP listener does not reach a udp service"
    );
    assert_eq!(udp_only.requests.load(Ordering::SeqCst), 0);

    // One port number, both protocols: each listener reaches its own.
    fake.add(
        "both",
        "m-both",
        vec![
            service(json!({"protocol": "tcp", "internal_port": 0, "ports": [{"port": PORT}]})),
            udp_service(),
        ],
        true,
    )
    .await;
    let udp = listen_udp(&running.proxy, "both").await;
    let client = udp_client(udp.addr).await;
    assert_eq!(exchange(&client, "dgram").await, "m-both:dgram");
    let raw = tcp(&running.proxy, "both", PORT, None).await;
    let stream = tokio::net::TcpStream::connect(raw.addr).await.unwrap();
    let reply = http10_exchange(stream).await.unwrap();
    assert!(reply.ends_with("machine=m-both"), "{reply}");
}

#[tokio::test]
async fn flows_beyond_the_cap_are_dropped() {
    let config = ProxyConfig {
        max_udp_flows: 2,
        udp_flow_idle: Duration::from_secs(2),
        ..test_config()
    };
    let d = dns(true, config).await;
    let (two, three) = (udp_client(d.udp.addr).await, udp_client(d.udp.addr).await);
    assert_eq!(exchange(&d.client, "1").await, "m-a:1");
    assert_eq!(exchange(&two, "2").await, "m-a:2");
    three.send(b"3").await.unwrap();
    assert_eq!(
        recv_within(&three, 300).await,
        None,
        "a third flow is over the cap"
    );
    assert_eq!(d.server.datagrams.load(Ordering::SeqCst), 2);
    assert_eq!(exchange(&d.client, "1b").await, "m-a:1b");
    assert_eq!(exchange(&two, "2b").await, "m-a:2b");
    assert_eq!(d.running.proxy.in_flight("m-a"), 2);
    // Once the flows have ended, there is room again.
    eventually(5, "the flows to end", || {
        d.running.proxy.in_flight("m-a") == 0
    })
    .await;
    assert_eq!(exchange(&three, "3b").await, "m-a:3b");
}

#[tokio::test]
async fn the_first_datagram_starts_a_stopped_machine() {
    let d = dns(false, test_config()).await;
    // Sent at once: the later ones wait while the machine starts.
    for message in ["first", "second", "third"] {
        d.client.send(message.as_bytes()).await.unwrap();
    }
    for message in ["first", "second", "third"] {
        let reply = recv_within(&d.client, 5000).await;
        assert_eq!(reply.as_deref(), Some(format!("m-a:{message}").as_str()));
    }
    assert_eq!(d.fake.state("dns", "m-a"), MachineState::Started);
    assert_eq!(d.fake.starts.load(Ordering::SeqCst), 1);
    assert_eq!(d.server.datagrams.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_flow_whose_machine_stops_listening_ends_and_is_routed_again() {
    let d = dns(true, test_config()).await;
    assert_eq!(exchange(&d.client, "a").await, "m-a:a");
    d.fake.add("dns", "m-b", vec![udp_service()], true).await;
    // Stopping closes m-a's socket: the next datagram meets port
    // unreachable, which ends the flow (that datagram is lost).
    d.fake.stop("dns", "m-a").await.unwrap();
    d.client.send(b"lost").await.unwrap();
    assert_eq!(recv_within(&d.client, 300).await, None);
    eventually(3, "the refused flow to end", || {
        d.running.proxy.in_flight("m-a") == 0
    })
    .await;
    assert_eq!(exchange(&d.client, "b").await, "m-b:b");
}
