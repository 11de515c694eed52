//! The edge proxy end to end: a real `roost up`, real machines (busybox
//! httpd with CGI scripts, and an `nc` upgrade echo) on the private
//! network, reached through `--proxy-listen` (and `--proxy-tls-listen`) by
//! Host `<app>.localhost`, and `--proxy-udp`.

mod common;

use common::{free_port, Daemon, APP};
use roost_types::{CreateMachineRequest, Machine, MachineFile, MachineState};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const OTHER_APP: &str = "e2e-other";
const WS_APP: &str = "e2e-ws";

/// Shell CGI scripts the machines serve under /cgi-bin, and the upgrade echo.
const ENV_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"machine=$FLY_MACHINE_ID client_ip=$HTTP_FLY_CLIENT_IP xff=$HTTP_X_FORWARDED_FOR proto=$HTTP_X_FORWARDED_PROTO rid=$HTTP_FLY_REQUEST_ID\"\n";
const REPLAY_CGI: &str = "#!/bin/sh\nif [ -n \"$HTTP_FLY_REPLAY_SRC\" ]; then\n  body=$(head -c \"${CONTENT_LENGTH:-0}\")\n  printf 'Content-Type: text/plain\\r\\n\\r\\n'\n  echo \"replayed-to=$FLY_MACHINE_ID src=$HTTP_FLY_REPLAY_SRC body=$body\"\nelse\n  to=$(echo \"$QUERY_STRING\" | sed 's/%3B/;/g; s/%3D/=/g')\n  printf 'Content-Type: text/plain\\r\\nfly-replay: %s\\r\\n\\r\\n' \"$to\"\n  echo asked\nfi\n";
const SSE_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/event-stream\\r\\n\\r\\n'\ni=0\nwhile [ $i -lt \"${QUERY_STRING:-5}\" ]; do printf 'data: %s %s\\n\\n' \"$FLY_MACHINE_ID\" $i; i=$((i+1)); sleep 1; done\n";
const SLOW_CGI: &str = "#!/bin/sh\nsleep 3\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho slow-$FLY_MACHINE_ID\n";
const UPGRADE_SH: &str = "#!/bin/sh\nwhile IFS= read -r line; do\n  line=$(printf '%s' \"$line\" | tr -d '\\r')\n  [ -z \"$line\" ] && break\ndone\nprintf 'HTTP/1.1 101 Switching Protocols\\r\\nConnection: upgrade\\r\\nUpgrade: echo\\r\\n\\r\\n'\nexec cat\n";

fn file(path: &str, text: &str) -> MachineFile {
    MachineFile {
        guest_path: path.into(),
        raw_value: Some(common::base64(text.as_bytes())),
        secret_name: None,
        mode: Some(0o755),
    }
}

/// busybox httpd on 8080 (index = `hello-<id>`, CGI scripts) and an
/// upgrade echo on 8081, with `services` from `services_json`.
fn web_machine(services_json: serde_json::Value) -> CreateMachineRequest {
    let mut config = common::sh_config(
        "mkdir -p /www && echo hello-$FLY_MACHINE_ID > /www/index.html && \
         (nc -ll -p 8081 -e /upgrade.sh &) ; exec httpd -f -p 8080 -h /www",
    );
    config.files = vec![
        file("/www/cgi-bin/env", ENV_CGI),
        file("/www/cgi-bin/replay", REPLAY_CGI),
        file("/www/cgi-bin/sse", SSE_CGI),
        file("/www/cgi-bin/slow", SLOW_CGI),
        file("/upgrade.sh", UPGRADE_SH),
    ];
    config.services = serde_json::from_value(services_json).expect("services");
    CreateMachineRequest {
        config,
        ..Default::default()
    }
}

fn http_service(extra: serde_json::Value) -> serde_json::Value {
    let mut service = serde_json::json!({
        "protocol": "tcp",
        "internal_port": 8080,
        "ports": [{"port": 80, "handlers": ["http"]}, {"port": 443, "handlers": ["tls", "http"]}],
    });
    for (k, v) in extra.as_object().expect("object") {
        service[k] = v.clone();
    }
    serde_json::json!([service])
}

async fn create(daemon: &Daemon, app: &str, req: &CreateMachineRequest) -> Machine {
    daemon
        .client()
        .create_machine(app, req)
        .await
        .unwrap_or_else(|e| panic!("create in {app}: {e}\n{}", daemon.log()))
}

struct Proxy {
    addr: String,
    /// Scheme and authority of request URLs.
    base: String,
    http: reqwest::Client,
}

impl Proxy {
    fn new(addr: String) -> Proxy {
        Proxy::with(format!("http://{addr}"), addr, reqwest::Client::builder())
    }

    /// The HTTPS listener on loopback `port`, reached as
    /// `https://<app>.localhost:<port>` (the name resolved to 127.0.0.1)
    /// trusting only `cert_pem`.
    fn https(app: &str, port: u16, cert_pem: &str) -> Proxy {
        let host = format!("{app}.localhost");
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
            .resolve(&host, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        Proxy::with(
            format!("https://{host}:{port}"),
            format!("127.0.0.1:{port}"),
            client,
        )
    }

    fn with(base: String, addr: String, client: reqwest::ClientBuilder) -> Proxy {
        Proxy {
            addr,
            base,
            http: client.timeout(Duration::from_secs(60)).build().unwrap(),
        }
    }

    fn request(&self, method: reqwest::Method, app: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("host", format!("{app}.localhost"))
    }

    async fn get(&self, app: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = self.request(reqwest::Method::GET, app, path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("proxy answers");
        let status = response.status().as_u16();
        (
            status,
            response.text().await.unwrap_or_default().trim().to_string(),
        )
    }

    /// GETs until the machine's program answers 200 (httpd may need a moment).
    async fn get_ok(&self, app: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let mut last = (0, String::new());
        for _ in 0..100 {
            last = self.get(app, path, headers).await;
            if last.0 == 200 {
                return last.1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("GET {path} on {app} kept failing: {last:?}");
    }
}

/// A TCP connection to `addr` that has sent `head` (reads time out after 10 s).
fn raw_request(addr: &str, head: &str) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

async fn wait_state(daemon: &Daemon, app: &str, id: &str, state: MachineState, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let machine = daemon
            .client()
            .get_machine(app, id)
            .await
            .expect("get machine");
        if machine.state == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "machine {id} is {} after {secs}s, expected {state}\n{}",
            machine.state,
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn autostart_autostop_limits_and_disconnects() {
    let addr = format!("127.0.0.1:{}", free_port());
    let daemon = Daemon::start_with_args(&[
        "--proxy-listen",
        &addr,
        "--proxy-autostop-idle-secs",
        "2",
        "--proxy-tick-ms",
        "200",
        "--proxy-queue-secs",
        "1",
    ])
    .await;
    let proxy = Proxy::new(addr);
    let service = http_service(serde_json::json!({
        "autostart": true,
        "autostop": "stop",
        "concurrency": {"type": "requests", "soft_limit": 1, "hard_limit": 1},
    }));
    let m = create(&daemon, APP, &web_machine(service)).await;
    assert!(!m.private_ip.is_empty());

    // Routing by Host, and the forwarding headers the machine sees.
    assert_eq!(proxy.get_ok(APP, "/", &[]).await, format!("hello-{}", m.id));
    let env = proxy.get_ok(APP, "/cgi-bin/env", &[]).await;
    assert!(env.contains(&format!("machine={}", m.id)), "{env}");
    assert!(
        env.contains("client_ip=127.0.0.1 xff=127.0.0.1 proto=http rid="),
        "{env}"
    );
    let (status, body) = proxy.get("nope", "/", &[]).await;
    assert_eq!(status, 404, "{body}");

    // At the hard limit (1) with nothing to start: queue 1s, then 503.
    let slow = {
        let proxy = Proxy::new(proxy.addr.clone());
        tokio::spawn(async move { proxy.get(APP, "/cgi-bin/slow", &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let began = Instant::now();
    let (status, body) = proxy.get(APP, "/", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("hard_limit"), "{body}");
    assert!(began.elapsed() >= Duration::from_millis(900));
    assert_eq!(slow.await.unwrap(), (200, format!("slow-{}", m.id)));

    // Idle for 2s: autostop stops it. The next request starts it again.
    wait_state(&daemon, APP, &m.id, MachineState::Stopped, 20).await;
    let began = Instant::now();
    let (status, body) = proxy.get(APP, "/", &[]).await;
    let cold = began.elapsed();
    assert_eq!((status, body), (200, format!("hello-{}", m.id)));
    eprintln!("autostart: first response after {cold:?}");
    let events = daemon.client().events(APP, &m.id).await.unwrap();
    assert!(
        events.iter().filter(|e| e.kind == "start").count() >= 1,
        "{events:?}"
    );

    // A client that leaves mid-stream leaves no load behind: the machine
    // becomes idle and is stopped again.
    let mut stream = raw_request(
        &proxy.addr,
        &format!("GET /cgi-bin/sse?100 HTTP/1.1\r\nHost: {APP}.localhost\r\n\r\n"),
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = stream.read(&mut buf).expect("first event");
        assert!(n > 0 && seen.len() < 65536);
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stream);
    wait_state(&daemon, APP, &m.id, MachineState::Stopped, 20).await;
}

#[tokio::test]
async fn replay_affinity_instances_streams_upgrades_and_checks() {
    let addr = format!("127.0.0.1:{}", free_port());
    let daemon =
        Daemon::start_with_args(&["--proxy-listen", &addr, "--proxy-tick-ms", "200"]).await;
    let proxy = Proxy::new(addr);
    daemon.client().create_app(OTHER_APP).await.unwrap();
    daemon.client().create_app(WS_APP).await.unwrap();
    let checked = http_service(serde_json::json!({
        "checks": [{"type": "http", "path": "/", "interval": "1s", "timeout": "2s"}],
    }));
    let m1 = create(&daemon, APP, &web_machine(checked.clone())).await;
    let m2 = create(&daemon, APP, &web_machine(checked)).await;
    let o1 = create(
        &daemon,
        OTHER_APP,
        &web_machine(http_service(serde_json::json!({}))),
    )
    .await;
    let mut ws_service = http_service(serde_json::json!({}));
    ws_service[0]["internal_port"] = 8081.into();
    let w1 = create(&daemon, WS_APP, &web_machine(ws_service)).await;
    for m in [&m1, &m2] {
        let force = [("fly-force-instance-id", m.id.as_str())];
        assert_eq!(
            proxy.get_ok(APP, "/", &force).await,
            format!("hello-{}", m.id)
        );
    }
    assert_eq!(
        proxy.get_ok(OTHER_APP, "/", &[]).await,
        format!("hello-{}", o1.id)
    );

    // An SSE stream held for 30+ s, events arriving one by one.
    let sse = {
        let proxy = Proxy::new(proxy.addr.clone());
        let id = m1.id.clone();
        tokio::spawn(async move {
            let mut response = proxy
                .request(reqwest::Method::GET, APP, "/cgi-bin/sse?32")
                .header("fly-force-instance-id", id)
                .send()
                .await
                .expect("sse");
            let began = Instant::now();
            let mut text = String::new();
            let mut arrivals = Vec::new();
            while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), response.chunk())
                .await
                .expect("an event at least every 10s")
                .expect("stream")
            {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while arrivals.len() < text.matches("\n\n").count() {
                    arrivals.push(began.elapsed());
                }
                assert!(arrivals.len() <= 32);
            }
            (text, arrivals)
        })
    };

    // Forced and preferred instances.
    for _ in 0..5 {
        let force = [("fly-force-instance-id", m2.id.as_str())];
        assert_eq!(
            proxy.get(APP, "/", &force).await,
            (200, format!("hello-{}", m2.id))
        );
        let prefer = [("fly-prefer-instance-id", m1.id.as_str())];
        assert_eq!(
            proxy.get(APP, "/", &prefer).await,
            (200, format!("hello-{}", m1.id))
        );
    }
    let (status, body) = proxy
        .get(APP, "/", &[("fly-force-instance-id", "0123456789abcd")])
        .await;
    assert_eq!(status, 503, "{body}");

    // fly-replay to another instance (with the body) and to another app.
    let to_m2 = format!("/cgi-bin/replay?instance%3D{}%3Bstate%3Ds1", m2.id);
    let response = proxy
        .request(reqwest::Method::POST, APP, &to_m2)
        .header("fly-force-instance-id", &m1.id)
        .body("payload")
        .send()
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    assert!(
        body.starts_with(&format!(
            "replayed-to={} src=instance={};region=",
            m2.id, m1.id
        )),
        "{body}"
    );
    assert!(
        body.trim_end().ends_with(";state=s1 body=payload"),
        "{body}"
    );
    let to_other = format!("/cgi-bin/replay?app%3D{OTHER_APP}");
    let (status, body) = proxy.get(APP, &to_other, &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with(&format!("replayed-to={} ", o1.id)),
        "{body}"
    );

    // Sessions stick to the machine that served them first, whatever the
    // load says: m1 carries the SSE stream, so least-loaded routing alone
    // would send everything to m2. Each session starts where it is told.
    for session in 0..6 {
        let key = format!("session-{session}");
        let home = if session % 2 == 0 { &m1 } else { &m2 };
        let first = proxy
            .get(
                APP,
                "/",
                &[
                    ("mcp-session-id", &key),
                    ("fly-prefer-instance-id", &home.id),
                ],
            )
            .await
            .1;
        assert_eq!(first, format!("hello-{}", home.id));
        for _ in 0..10 {
            assert_eq!(
                proxy.get(APP, "/", &[("mcp-session-id", &key)]).await.1,
                first,
                "{key}"
            );
        }
    }

    // Health checks show in the machine's checks.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let machine = daemon.client().get_machine(APP, &m1.id).await.unwrap();
        if machine
            .checks
            .first()
            .is_some_and(|c| c.status == "passing")
        {
            assert!(machine.checks[0]
                .name
                .starts_with("servicecheck-00-http-8080"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no passing check: {:?}",
            machine.checks
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Cordoned machines get no traffic.
    let cordon = daemon
        .http(
            reqwest::Method::POST,
            &format!("/v1/apps/{APP}/machines/{}/cordon", m2.id),
        )
        .send()
        .await
        .unwrap();
    assert!(cordon.status().is_success(), "{:?}", cordon.text().await);
    for _ in 0..10 {
        assert_eq!(proxy.get(APP, "/", &[]).await.1, format!("hello-{}", m1.id));
    }

    // An HTTP/1.1 upgrade passes through as a byte pipe.
    let mut stream = raw_request(
        &proxy.addr,
        &format!("GET / HTTP/1.1\r\nHost: {WS_APP}.localhost\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n"),
    );
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("101 head"), 1, "{head:?}");
        head.push(byte[0]);
        assert!(head.len() < 4096);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for i in 0..5 {
        let line = format!("ping {i}\n");
        stream.write_all(line.as_bytes()).unwrap();
        let mut echoed = vec![0u8; line.len()];
        stream.read_exact(&mut echoed).expect("echo");
        assert_eq!(String::from_utf8_lossy(&echoed), line);
    }
    drop(stream);
    let _ = w1;

    let (text, arrivals) = sse.await.unwrap();
    assert_eq!(
        text.matches(&format!("data: {} ", m1.id)).count(),
        32,
        "{text}"
    );
    assert!(arrivals[31] >= Duration::from_secs(30), "{arrivals:?}");
    assert!(
        arrivals[0] < Duration::from_secs(3),
        "the first event came at once: {arrivals:?}"
    );
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] < Duration::from_secs(3),
            "unbuffered: {arrivals:?}"
        );
    }
}

#[tokio::test]
async fn tls_termination() {
    let certs = tempfile::tempdir().unwrap();
    // One name per app: TLS clients refuse the wildcard `*.localhost`.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![format!("{APP}.localhost")])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_file, key_file) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let tls_port = free_port();
    let daemon = Daemon::start_with_args(&[
        "--proxy-listen",
        &addr,
        "--proxy-tls-listen",
        &format!("127.0.0.1:{tls_port}"),
        "--proxy-tls-cert",
        &cert_file.to_string_lossy(),
        "--proxy-tls-key",
        &key_file.to_string_lossy(),
    ])
    .await;
    let service = serde_json::json!([{
        "protocol": "tcp",
        "internal_port": 8080,
        "ports": [{"port": 443, "handlers": ["tls", "http"]}],
    }]);
    let m = create(&daemon, APP, &web_machine(service)).await;

    let https = Proxy::https(APP, tls_port, &cert.pem());
    assert_eq!(https.get_ok(APP, "/", &[]).await, format!("hello-{}", m.id));
    let env = https.get_ok(APP, "/cgi-bin/env", &[]).await;
    assert!(env.contains("proto=https"), "{env}");

    // The plain listener does not reach a `["tls", "http"]` port.
    let (status, body) = Proxy::new(addr).get(APP, "/", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no tls handler"), "{body}");
}

/// A daemon whose proxy serves APP's UDP port 5353 at the address returned.
async fn udp_daemon(extra: &[&str]) -> (Daemon, String) {
    let udp_addr = format!("127.0.0.1:{}", free_port());
    let proxy_addr = format!("127.0.0.1:{}", free_port());
    let udp_spec = format!("{APP}:5353={udp_addr}");
    let mut args = vec![
        "--proxy-listen",
        proxy_addr.as_str(),
        "--proxy-udp",
        udp_spec.as_str(),
    ];
    args.extend_from_slice(extra);
    (Daemon::start_with_args(&args).await, udp_addr)
}

/// `--proxy-udp` with autostart and autostop. busybox has no UDP server
/// applet (its `nc` has no `-u`), so the machine's own program cannot
/// answer (see `udp_round_trip_to_a_machine` for a reply): a datagram autostarts a
/// stopped machine with a `udp` service, and since nothing listens on its
/// port the machine answers port unreachable, which ends the flow and
/// releases its load, so autostop stops the machine again.
#[tokio::test]
async fn udp_datagrams_autostart_and_release_the_machine() {
    let (daemon, udp_addr) =
        udp_daemon(&["--proxy-autostop-idle-secs", "2", "--proxy-tick-ms", "200"]).await;
    let service = serde_json::json!([{
        "protocol": "udp",
        "internal_port": 5353,
        "ports": [{"port": 5353}],
        "autostart": true,
        "autostop": "stop",
        "min_machines_running": 0,
    }]);
    let m = create(&daemon, APP, &web_machine(service)).await;
    wait_state(&daemon, APP, &m.id, MachineState::Stopped, 20).await;

    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"wake up", &udp_addr).unwrap();
    wait_state(&daemon, APP, &m.id, MachineState::Started, 20).await;
    wait_state(&daemon, APP, &m.id, MachineState::Stopped, 20).await;
    let events = daemon.client().events(APP, &m.id).await.unwrap();
    assert!(
        events.iter().filter(|e| e.kind == "start").count() >= 2,
        "{events:?}"
    );
}

/// A UDP echo server in a machine's network namespace: python3 run from
/// the host through `nsenter --net`, since the test image's busybox has no
/// UDP server. Datagrams take the path a machine's own program would get
/// (its veth, the app's bridge, the host's input filter). Killed on drop.
struct NetnsUdpEcho(std::process::Child);

impl NetnsUdpEcho {
    fn start(netns: &std::path::Path, port: u16) -> NetnsUdpEcho {
        let script = format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
             s.bind(('::', {port}))\n\
             print('ready', flush=True)\n\
             while True:\n\
             \x20   data, peer = s.recvfrom(65535)\n\
             \x20   s.sendto(b'echo:' + data, peer)\n"
        );
        let mut child = std::process::Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["python3", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("nsenter python3");
        let stdout = child.stdout.take().expect("piped stdout");
        let echo = NetnsUdpEcho(child);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("echo server output");
        assert_eq!(line.trim(), "ready", "UDP echo server did not start");
        echo
    }
}

impl Drop for NetnsUdpEcho {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A datagram's round trip through `--proxy-udp` to a program in a
/// started machine's network and back: the reply crosses the host's input
/// filter to the proxy's flow socket.
#[tokio::test]
async fn udp_round_trip_to_a_machine() {
    let (daemon, udp_addr) = udp_daemon(&[]).await;
    let service = serde_json::json!([{
        "protocol": "udp",
        "internal_port": 5353,
        "ports": [{"port": 5353}],
        "autostop": "off",
    }]);
    let m = create(&daemon, APP, &web_machine(service)).await;
    wait_state(&daemon, APP, &m.id, MachineState::Started, 20).await;
    let _echo = NetnsUdpEcho::start(&daemon.netns_dir().join(&m.id), 5353);

    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for message in ["hello", "again"] {
        client.send_to(message.as_bytes(), &udp_addr).unwrap();
        let mut reply = [0u8; 64];
        let (n, from) = client
            .recv_from(&mut reply)
            .expect("a reply through the proxy");
        assert_eq!(from.to_string(), udp_addr);
        assert_eq!(
            std::str::from_utf8(&reply[..n]).unwrap(),
            format!("echo:{message}")
        );
    }
}
