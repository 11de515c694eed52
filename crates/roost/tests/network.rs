//! The private network end to end: real machines (busybox httpd, wget,
//! nslookup, ping) on a real `roost up`, in their own namespaces on the
//! app's bridge. The harness gives every daemon its own site (`fdaa:S::/32`)
//! and tears its bridges, namespaces and rules down even when a test fails.

mod common;

use common::{Daemon, APP};
use roost_types::{CreateMachineRequest, Machine, StopRequest};
use std::time::Duration;

const OTHER_APP: &str = "e2e-other";

/// A machine serving `hello-<its id>` with busybox httpd on port 80.
fn web_server() -> CreateMachineRequest {
    CreateMachineRequest {
        config: common::sh_config(
            "mkdir -p /www && echo hello-$FLY_MACHINE_ID > /www/index.html && exec httpd -f -p 80 -h /www",
        ),
        ..Default::default()
    }
}

async fn create(daemon: &Daemon, app: &str) -> Machine {
    daemon
        .client()
        .create_machine(app, &web_server())
        .await
        .unwrap_or_else(|e| panic!("create in {app}: {e}\n{}", daemon.log()))
}

/// Runs `script` in machine `id` of `app`; returns (exit code, stdout + stderr).
async fn sh(daemon: &Daemon, app: &str, id: &str, script: &str) -> (i32, String) {
    let out = daemon.sh_in(app, id, script).await;
    (out.exit_code, format!("{}{}", out.stdout, out.stderr))
}

/// Retries `script` until it exits 0 (httpd may need a moment to listen).
async fn sh_until_ok(daemon: &Daemon, app: &str, id: &str, script: &str) -> String {
    let mut last = (0, String::new());
    for _ in 0..50 {
        last = sh(daemon, app, id, script).await;
        if last.0 == 0 {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{script:?} in {id} kept failing: {last:?}");
}

/// The busybox wget line that fetches `url` straight over the private
/// network. Machines get `http_proxy` for egress, and busybox wget honours
/// it but ignores `no_proxy`, so `-Y off` keeps these requests off the
/// egress proxy: what is tested here is the network's own filter.
/// (wget's own `-T` crashes Debian's busybox 1.35; `timeout` bounds it.)
fn wget_direct(url: &str) -> String {
    format!("timeout 5 wget -Y off -q -O - {url}")
}

/// The body of `url`, fetched with busybox wget inside machine `id`.
async fn fetch(daemon: &Daemon, app: &str, id: &str, url: &str) -> String {
    sh_until_ok(daemon, app, id, &wget_direct(url))
        .await
        .trim()
        .to_string()
}

/// `nslookup -type=AAAA name` in machine `id`: (exit code, output).
async fn nslookup(daemon: &Daemon, app: &str, id: &str, name: &str) -> (i32, String) {
    sh(daemon, app, id, &format!("nslookup -type=AAAA {name}")).await
}

/// The API's list of apps, as machine `id` fetches it at the service address.
async fn apps_seen_from(daemon: &Daemon, app: &str, id: &str) -> String {
    let service = daemon.network().service_address();
    let api = format!(
        "--header 'Authorization: Bearer {}' http://[{service}]:4280/v1/apps",
        daemon.token
    );
    fetch(daemon, app, id, &api).await
}

/// Asserts that machine `id` cannot fetch `url`, refused at once (the
/// host's "prohibited" answer) rather than timing out.
async fn assert_refused(daemon: &Daemon, app: &str, id: &str, url: &str) {
    let (code, out) = sh(daemon, app, id, &wget_direct(url)).await;
    assert_ne!(code, 0, "{id} of {app} fetched {url}: {out}");
    assert!(out.contains("Permission denied"), "refused slowly: {out}");
}

/// GETs `http://[ip]/` from the host (roost's own network namespace).
async fn host_get(ip: &str) -> Result<String, reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .build()?;
    let mut last = None;
    for _ in 0..50 {
        match client.get(format!("http://[{ip}]/")).send().await {
            Ok(response) => return response.text().await,
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.expect("an error"))
}

#[tokio::test(flavor = "multi_thread")]
async fn machines_of_an_app_talk_other_apps_cannot() {
    let daemon = Daemon::start().await;
    let client = daemon.client();
    client
        .create_app(OTHER_APP)
        .await
        .expect("create other app");
    let a1 = create(&daemon, APP).await;
    let a2 = create(&daemon, APP).await;
    let b1 = create(&daemon, OTHER_APP).await;
    let site = daemon.site;
    for m in [&a1, &a2, &b1] {
        let ip: std::net::Ipv6Addr = m.private_ip.parse().expect("private_ip is IPv6");
        assert_eq!(ip.segments()[..2], [0xfdaa, site], "{ip} outside the site");
    }
    assert_eq!(
        a1.private_ip.rsplit_once("::").map(|(net, _)| net),
        a2.private_ip.rsplit_once("::").map(|(net, _)| net),
        "one app, one subnet"
    );
    assert_ne!(a1.private_ip, a2.private_ip);

    // Inside: eth0 with the address, resolv.conf at roost's DNS, FLY_PRIVATE_IP.
    let (_, inside) = sh(
        &daemon,
        APP,
        &a1.id,
        "ip -6 addr show dev eth0; cat /etc/resolv.conf; echo ip=$FLY_PRIVATE_IP",
    )
    .await;
    let service = format!("fdaa:{site:x}::3");
    assert!(
        inside.contains(&format!("inet6 {}/64", a1.private_ip)),
        "{inside}"
    );
    assert!(
        inside.contains(&format!("nameserver {service}")),
        "{inside}"
    );
    assert!(
        inside.contains(&format!("ip={}", a1.private_ip)),
        "{inside}"
    );

    // Same app: by address, by name, by bare machine id (resolv.conf's search).
    let hello_a2 = format!("hello-{}", a2.id);
    for host in [
        format!("[{}]", a2.private_ip),
        format!("{}.vm.{APP}.internal", a2.id),
        a2.id.clone(),
    ] {
        let page = fetch(&daemon, APP, &a1.id, &format!("http://{host}/")).await;
        assert_eq!(page, hello_a2, "via {host}");
    }

    // DNS names: app (started machines), nearest, unknown.
    let lookup = |name: String| {
        let daemon = &daemon;
        let a1 = &a1.id;
        async move { nslookup(daemon, APP, a1, &name).await }
    };
    let (_, all) = lookup(format!("{APP}.internal")).await;
    assert!(
        all.contains(&a1.private_ip) && all.contains(&a2.private_ip),
        "{all}"
    );
    let (_, one) = lookup(format!("top1.nearest.of.{APP}.internal")).await;
    assert!(
        one.contains(&a1.private_ip) ^ one.contains(&a2.private_ip),
        "{one}"
    );
    let (code, none) = lookup(format!("nope.vm.{APP}.internal")).await;
    assert!(code != 0 && none.contains("NXDOMAIN"), "{none}");

    // Other apps: no route either way, and B's DNS view lacks A's names.
    assert_refused(
        &daemon,
        OTHER_APP,
        &b1.id,
        &format!("http://[{}]/", a2.private_ip),
    )
    .await;
    assert_refused(
        &daemon,
        APP,
        &a1.id,
        &format!("http://[{}]/", b1.private_ip),
    )
    .await;
    let a2_name = format!("{}.vm.{APP}.internal", a2.id);
    let (code, out) = nslookup(&daemon, OTHER_APP, &b1.id, &a2_name).await;
    assert!(code != 0 && out.contains("NXDOMAIN"), "{out}");

    // The host reaches every machine: ICMP (busybox ping needs CAP_NET_RAW,
    // which machines lack, so it runs on the host) and HTTP.
    for m in [&a1, &b1] {
        let ping = std::process::Command::new("busybox")
            .args(["ping", "-6", "-c", "1", "-W", "2", &m.private_ip])
            .output()
            .expect("busybox ping");
        assert!(
            ping.status.success(),
            "host cannot ping {}: {ping:?}",
            m.private_ip
        );
    }
    let page = host_get(&a2.private_ip).await.expect("host reaches a2");
    assert_eq!(page.trim(), format!("hello-{}", a2.id));
    let page = host_get(&b1.private_ip).await.expect("host reaches b1");
    assert_eq!(page.trim(), format!("hello-{}", b1.id));

    // Machines reach roost's services at the service address: the API.
    for (app, id) in [(APP, &a1.id), (OTHER_APP, &b1.id)] {
        let apps = apps_seen_from(&daemon, app, id).await;
        assert!(apps.contains(OTHER_APP), "{apps}");
    }

    // private_ip is stable across stop/start; a stopped machine leaves the app's name.
    client
        .stop_machine(APP, &a2.id, &StopRequest::default())
        .await
        .expect("stop");
    let stopped = client.get_machine(APP, &a2.id).await.expect("get");
    assert_eq!(stopped.private_ip, a2.private_ip);
    let (_, all) = lookup(format!("{APP}.internal")).await;
    assert!(!all.contains(&a2.private_ip), "{all}");
    assert!(common::processes_mentioning(&a2.id).is_empty());
    client.start_machine(APP, &a2.id).await.expect("start");
    let started = client.get_machine(APP, &a2.id).await.expect("get");
    assert_eq!(started.private_ip, a2.private_ip);
    let page = fetch(
        &daemon,
        APP,
        &a1.id,
        &format!("http://[{}]/", a2.private_ip),
    )
    .await;
    assert_eq!(page, hello_a2);

    // Destroy removes the namespace and the veth; app delete removes the bridge.
    client
        .destroy_machine(APP, &a2.id, true)
        .await
        .expect("destroy");
    let netns = daemon.netns_dir();
    assert!(!netns.join(&a2.id).exists(), "namespace file left");
    assert!(!common::link_exists(&format!("v{}", a2.id)), "veth left");
    let bridges_before = common::bridges_of_site(site);
    assert_eq!(bridges_before.len(), 2, "{bridges_before:?}");
    client.delete_app(OTHER_APP).await.expect("delete app");
    assert_eq!(common::bridges_of_site(site).len(), 1);
    assert!(!netns.join(&b1.id).exists());

    // A new machine reuses the freed address.
    let a3 = create(&daemon, APP).await;
    assert_eq!(a3.private_ip, a2.private_ip);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_recreates_lost_namespaces() {
    let mut daemon = Daemon::start().await;
    let client = daemon.client();
    let m = create(&daemon, APP).await;
    client
        .stop_machine(APP, &m.id, &StopRequest::default())
        .await
        .expect("stop");
    daemon.kill();
    // What a reboot does to /run: the namespace is gone.
    let netns = daemon.netns_dir().join(&m.id);
    nix::mount::umount2(&netns, nix::mount::MntFlags::MNT_DETACH).expect("umount netns");
    std::fs::remove_file(&netns).expect("remove netns file");
    daemon.spawn(None).await;
    assert!(netns.exists(), "recovery did not recreate the namespace");
    let client = daemon.client();
    client.start_machine(APP, &m.id).await.expect("start");
    let page = host_get(&m.private_ip)
        .await
        .expect("host reaches the machine");
    assert_eq!(page.trim(), format!("hello-{}", m.id));
}

#[tokio::test(flavor = "multi_thread")]
async fn machines_reach_only_roosts_services_on_the_host() {
    let daemon = Daemon::start().await;
    let m = create(&daemon, APP).await;
    let network = daemon.network();
    let service = network.service_address();
    let ip: std::net::Ipv6Addr = m.private_ip.parse().expect("private_ip is IPv6");
    let gateway = network.plan().gateway(ip.segments()[2]).expect("gateway");

    // A host service on every address, as sshd or a database listens.
    let listener = std::net::TcpListener::bind("[::]:0").expect("bind [::]:0");
    let port = listener.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    // It is live: the host reaches it at the gateway address.
    std::net::TcpStream::connect((gateway, port)).expect("host reaches its own service");
    let count = || accepted.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..50 {
        if count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(), 1, "the host's own connection was not accepted");

    // The machine is refused at once at the gateway and at the service address.
    for host in [gateway, service] {
        assert_refused(&daemon, APP, &m.id, &format!("http://[{host}]:{port}/")).await;
    }
    assert_eq!(
        count(),
        1,
        "a machine's connection reached the host service"
    );

    // roost's own services still answer it there: DNS and the API.
    let own_name = format!("{}.vm.{APP}.internal", m.id);
    let (code, out) = nslookup(&daemon, APP, &m.id, &own_name).await;
    assert!(code == 0 && out.contains(&m.private_ip), "{out}");
    let apps = apps_seen_from(&daemon, APP, &m.id).await;
    assert!(apps.contains(APP), "{apps}");
    // And the host still reaches the machine's service.
    let page = host_get(&m.private_ip)
        .await
        .expect("host reaches the machine");
    assert_eq!(page.trim(), format!("hello-{}", m.id));

    // The site's filter is on the host while the daemon is, gone after.
    let filter = || roost_net::firewall::installed(network.plan());
    assert_eq!(filter().await.expect("input filter").jumps, 1);
    drop(daemon);
    let left = filter().await.expect("input filter");
    assert!(!left.chain && left.jumps == 0, "left behind: {left:?}");
}
