//! Routing, limits, autostart/autostop, instances, replay and affinity,
//! against real loopback servers standing in for machines.

mod common;

use common::*;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test]
async fn routes_by_host_and_sets_forwarding_headers() {
    let fake = Fake::new();
    let a = fake
        .add("alpha", "m-a", vec![http_service(json!({}))], true)
        .await;
    fake.add("beta", "m-b", vec![http_service(json!({}))], true)
        .await;
    let proxy = start_proxy(&fake, test_config()).await;

    let reply = get(
        proxy.addr,
        "alpha.localhost:8080",
        "/x?y=1",
        &[("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "machine=m-a");
    let id = reply.headers["fly-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(id.ends_with("-local") && id.len() == 26 + 6, "{id}");
    let seen = a.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["fly-client-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(
        seen["x-forwarded-port"],
        proxy.addr.port().to_string().as_str()
    );
    assert_eq!(seen["fly-request-id"].to_str().unwrap(), id);
    assert_eq!(seen["host"], "alpha.localhost:8080");

    assert_eq!(
        get(proxy.addr, "beta.localhost", "/", &[]).await.body,
        "machine=m-b"
    );
    let unknown = get(proxy.addr, "gamma.localhost", "/", &[]).await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.body.contains("no app named \"gamma\""),
        "{}",
        unknown.body
    );
    let foreign = get(proxy.addr, "example.com", "/", &[]).await;
    assert_eq!(foreign.status, 404);
    assert!(foreign.body.contains("<app>.localhost"), "{}", foreign.body);

    // POST bodies arrive intact.
    let reply = send(
        &client(),
        request(proxy.addr, "alpha.localhost", "/echo", &[], "hello"),
    )
    .await;
    assert_eq!(reply.body, "machine=m-a body=hello");

    // h2c: HTTP/2 with prior knowledge on the same port.
    let reply = send(
        &h2_client(),
        request(proxy.addr, "alpha.localhost", "/h2", &[], ""),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "machine=m-a");
}

#[tokio::test]
async fn services_on_other_ports_and_raw_tcp_are_not_http() {
    let fake = Fake::new();
    fake.add(
        "alpha",
        "m-tcp",
        vec![service(
            json!({"internal_port": 0, "ports": [{"port": 5432}]}),
        )],
        true,
    )
    .await;
    let proxy = start_proxy(&fake, test_config()).await;
    let reply = get(proxy.addr, "alpha.localhost", "/", &[]).await;
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .body
            .contains("no uncordoned machine with a service for port 80/"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn least_loaded_machine_and_cordons() {
    let fake = Fake::new();
    let one = fake
        .add("app", "m1", vec![http_service(json!({}))], true)
        .await;
    let two = fake
        .add("app", "m2", vec![http_service(json!({}))], true)
        .await;
    let proxy = start_proxy(&fake, test_config()).await;

    // Spread: 20 sequential requests reach both machines.
    for _ in 0..20 {
        assert_eq!(get(proxy.addr, "app.localhost", "/", &[]).await.status, 200);
    }
    assert!(one.requests.load(Ordering::SeqCst) > 0 && two.requests.load(Ordering::SeqCst) > 0);

    // A slow request on one machine sends the next ones to the other.
    let addr = proxy.addr;
    let slow = tokio::spawn(async move { get(addr, "app.localhost", "/slow?ms=800", &[]).await });
    eventually(5, "slow request in flight", || {
        proxy.proxy.in_flight("m1") + proxy.proxy.in_flight("m2") == 1
    })
    .await;
    let busy = if proxy.proxy.in_flight("m1") == 1 {
        "m1"
    } else {
        "m2"
    };
    for _ in 0..5 {
        let reply = get(proxy.addr, "app.localhost", "/", &[]).await;
        assert_ne!(reply.body, format!("machine={busy}"));
    }
    slow.await.unwrap();

    // Cordoned machines get nothing.
    fake.set_cordoned("app", "m1", true);
    let before = one.requests.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(
            get(proxy.addr, "app.localhost", "/", &[]).await.body,
            "machine=m2"
        );
    }
    assert_eq!(one.requests.load(Ordering::SeqCst), before);
    fake.set_cordoned("app", "m2", true);
    let reply = get(proxy.addr, "app.localhost", "/", &[]).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(proxy.proxy.in_flight("m1") + proxy.proxy.in_flight("m2"), 0);
}

#[tokio::test]
async fn autostart_holds_the_request_until_the_port_accepts() {
    let fake = Fake::new();
    let server = fake
        .add("app", "m1", vec![http_service(json!({}))], false)
        .await;
    fake.set_bind_delay("app", "m1", Duration::from_millis(300));
    let proxy = start_proxy(&fake, test_config()).await;

    // Several requests at once: one start, all answered by the machine.
    let began = Instant::now();
    let mut requests = Vec::new();
    for _ in 0..5 {
        let addr = proxy.addr;
        requests.push(tokio::spawn(async move {
            get(addr, "app.localhost", "/", &[]).await
        }));
    }
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "machine=m1");
    }
    assert!(
        began.elapsed() >= Duration::from_millis(300),
        "the requests waited for the port"
    );
    assert_eq!(fake.starts.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 5);

    // autostart off: a stopped machine stays stopped and the request fails clearly.
    let fake = Fake::new();
    fake.add(
        "app",
        "m1",
        vec![http_service(json!({"autostart": false}))],
        false,
    )
    .await;
    let proxy = start_proxy(&fake, test_config()).await;
    let reply = get(proxy.addr, "app.localhost", "/", &[]).await;
    assert_eq!(reply.status, 503);
    assert!(
        reply.body.contains("m1 (stopped, autostart off)"),
        "{}",
        reply.body
    );
    assert_eq!(fake.starts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn soft_limit_starts_another_machine_and_hard_limit_queues_then_503s() {
    let fake = Fake::new();
    let limits = json!({"concurrency": {"type": "requests", "soft_limit": 1, "hard_limit": 1}});
    fake.add("app", "m1", vec![http_service(limits.clone())], true)
        .await;
    fake.add("app", "m2", vec![http_service(limits)], false)
        .await;
    let mut config = test_config();
    config.queue_timeout = Duration::from_millis(400);
    let proxy = start_proxy(&fake, config).await;
    let addr = proxy.addr;

    // m1 busy (soft limit reached) → m2 is started for the next request.
    let first = tokio::spawn(async move { get(addr, "app.localhost", "/slow?ms=1500", &[]).await });
    eventually(5, "first request in flight", || {
        proxy.proxy.in_flight("m1") == 1
    })
    .await;
    let second =
        tokio::spawn(async move { get(addr, "app.localhost", "/slow?ms=1500", &[]).await });
    eventually(5, "m2 started and busy", || {
        proxy.proxy.in_flight("m2") == 1
    })
    .await;
    assert_eq!(fake.starts.load(Ordering::SeqCst), 1);

    // Both at their hard limit, nothing left to start: queue, then 503.
    let began = Instant::now();
    let reply = get(addr, "app.localhost", "/", &[]).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("hard_limit"), "{}", reply.body);
    assert_eq!(reply.headers["retry-after"], "1");
    assert!(began.elapsed() >= Duration::from_millis(400));

    // A queued request is served as soon as a slot frees up.
    let mut config = test_config();
    config.queue_timeout = Duration::from_secs(5);
    drop(proxy);
    first.await.unwrap();
    second.await.unwrap();
    let fake = Fake::new();
    fake.add(
        "app",
        "m1",
        vec![http_service(
            json!({"concurrency": {"hard_limit": 1, "soft_limit": 1}}),
        )],
        true,
    )
    .await;
    let proxy = start_proxy(&fake, config).await;
    let addr = proxy.addr;
    let slow = tokio::spawn(async move { get(addr, "app.localhost", "/slow?ms=500", &[]).await });
    eventually(5, "slow request in flight", || {
        proxy.proxy.in_flight("m1") == 1
    })
    .await;
    let began = Instant::now();
    let reply = get(addr, "app.localhost", "/", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(
        began.elapsed() >= Duration::from_millis(300),
        "it waited for the slot"
    );
    slow.await.unwrap();
}

#[tokio::test]
async fn autostop_stops_idle_machines_down_to_min_machines_running() {
    let fake = Fake::new();
    let svc = json!({"autostop": "stop", "min_machines_running": 1});
    fake.add("app", "m1", vec![http_service(svc.clone())], true)
        .await;
    fake.add("app", "m2", vec![http_service(svc.clone())], true)
        .await;
    fake.add(
        "app",
        "m3",
        vec![http_service(json!({"autostop": "off"}))],
        true,
    )
    .await;
    let mut config = test_config();
    config.autostop_idle = Duration::from_millis(500);
    let proxy = start_proxy(&fake, config).await;

    // A long stream keeps its machine busy, so it is never idle.
    let addr = proxy.addr;
    let stream = tokio::spawn(async move {
        get(
            addr,
            "app.localhost",
            "/sse?n=12&ms=100",
            &[("fly-force-instance-id", "m1")],
        )
        .await
    });
    eventually(5, "one machine stopped", || {
        fake.stops.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(fake.state("app", "m2"), roost_types::MachineState::Stopped);
    assert_eq!(fake.state("app", "m1"), roost_types::MachineState::Started);
    stream.await.unwrap();
    // m1 is now idle too, but min_machines_running (1) counts m3 as well:
    // 2 started > 1, so m1 goes; m3 has autostop off and stays.
    eventually(5, "m1 stopped", || {
        fake.state("app", "m1") == roost_types::MachineState::Stopped
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(fake.state("app", "m3"), roost_types::MachineState::Started);
    assert_eq!(fake.stops.load(Ordering::SeqCst), 2);

    // min_machines_running keeps the last one.
    let fake = Fake::new();
    fake.add("app", "only", vec![http_service(svc)], true).await;
    let mut config = test_config();
    config.autostop_idle = Duration::from_millis(200);
    let _proxy = start_proxy(&fake, config).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(fake.stops.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn stopped_then_requested_again_starts_again() {
    let fake = Fake::new();
    fake.add(
        "app",
        "m1",
        vec![http_service(json!({"autostop": true}))],
        false,
    )
    .await;
    let mut config = test_config();
    config.autostop_idle = Duration::from_millis(300);
    let proxy = start_proxy(&fake, config).await;
    for round in 1..=3 {
        let reply = get(proxy.addr, "app.localhost", "/", &[]).await;
        assert_eq!(reply.status, 200, "round {round}: {}", reply.body);
        eventually(5, "autostop", || fake.stops.load(Ordering::SeqCst) == round).await;
    }
    assert_eq!(fake.starts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn forced_and_preferred_instances() {
    let fake = Fake::new();
    fake.add("app", "m1", vec![http_service(json!({}))], true)
        .await;
    fake.add("app", "m2", vec![http_service(json!({}))], true)
        .await;
    fake.add(
        "app",
        "m3",
        vec![http_service(json!({"autostart": false}))],
        false,
    )
    .await;
    let proxy = start_proxy(&fake, test_config()).await;
    for _ in 0..5 {
        let reply = get(
            proxy.addr,
            "app.localhost",
            "/",
            &[("fly-force-instance-id", "m2")],
        )
        .await;
        assert_eq!(reply.body, "machine=m2");
        let reply = get(
            proxy.addr,
            "app.localhost",
            "/",
            &[("fly-prefer-instance-id", "m1")],
        )
        .await;
        assert_eq!(reply.body, "machine=m1");
    }
    let missing = get(
        proxy.addr,
        "app.localhost",
        "/",
        &[("fly-force-instance-id", "nope")],
    )
    .await;
    assert_eq!(missing.status, 503);
    assert!(
        missing.body.contains("app app has no machine nope"),
        "{}",
        missing.body
    );
    let stopped = get(
        proxy.addr,
        "app.localhost",
        "/",
        &[("fly-force-instance-id", "m3")],
    )
    .await;
    assert_eq!(stopped.status, 503);
    assert!(stopped.body.contains("autostart off"), "{}", stopped.body);
    fake.set_cordoned("app", "m2", true);
    let cordoned = get(
        proxy.addr,
        "app.localhost",
        "/",
        &[("fly-force-instance-id", "m2")],
    )
    .await;
    assert_eq!(cordoned.status, 503);
    assert!(cordoned.body.contains("cordoned"), "{}", cordoned.body);
    // Preferred but unavailable: any machine instead.
    let reply = get(
        proxy.addr,
        "app.localhost",
        "/",
        &[("fly-prefer-instance-id", "m3")],
    )
    .await;
    assert_eq!(reply.body, "machine=m1");
    let reply = get(
        proxy.addr,
        "app.localhost",
        "/",
        &[("fly-prefer-instance-id", "nope")],
    )
    .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn fly_replay_to_instances_apps_and_elsewhere() {
    let fake = Fake::new();
    fake.add("app", "m1", vec![http_service(json!({}))], true)
        .await;
    fake.add("app", "m2", vec![http_service(json!({}))], true)
        .await;
    fake.add("other", "o1", vec![http_service(json!({}))], true)
        .await;
    let proxy = start_proxy(&fake, test_config()).await;
    let c = client();
    let ask = |v: &str, headers: &[(&'static str, &'static str)], body: &str| {
        request(
            proxy.addr,
            "app.localhost",
            &format!("/replay?v={v}"),
            headers,
            body,
        )
    };

    // instance=: the body is replayed and the target learns who sent it.
    let reply = send(
        &c,
        ask(
            "instance%3Dm2%3Bstate%3Dabc",
            &[("fly-force-instance-id", "m1")],
            "payload",
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .body
            .starts_with("machine=m2 src=instance=m1;region=local;t="),
        "{}",
        reply.body
    );
    assert!(
        reply.body.ends_with(";state=abc body=payload"),
        "{}",
        reply.body
    );
    assert!(!reply.headers.contains_key("fly-replay"));

    // app=: another app.
    let reply = send(
        &c,
        ask("app%3Dother", &[("fly-force-instance-id", "m1")], ""),
    )
    .await;
    assert!(
        reply.body.starts_with("machine=o1 src=instance=m1;"),
        "{}",
        reply.body
    );

    // elsewhere=true: any machine but the one that answered.
    for _ in 0..5 {
        let reply = send(
            &c,
            ask("elsewhere%3Dtrue", &[("fly-prefer-instance-id", "m1")], ""),
        )
        .await;
        assert!(
            reply.body.starts_with("machine=m2 src=instance=m1;"),
            "{}",
            reply.body
        );
        let reply = send(
            &c,
            ask("elsewhere%3Dtrue", &[("fly-prefer-instance-id", "m2")], ""),
        )
        .await;
        assert!(
            reply.body.starts_with("machine=m1 src=instance=m2;"),
            "{}",
            reply.body
        );
    }

    // Replays to nowhere are answered clearly.
    let reply = send(&c, ask("instance%3Dghost", &[], "")).await;
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("no machine ghost"), "{}", reply.body);
    let reply = send(&c, ask("app%3Dghost", &[], "")).await;
    assert_eq!(reply.status, 502);
    assert!(
        reply
            .body
            .contains("fly-replay named an app that does not exist"),
        "{}",
        reply.body
    );
    let reply = send(&c, ask("instance", &[], "")).await;
    assert_eq!(reply.status, 502);
    assert!(reply.body.contains("invalid fly-replay"), "{}", reply.body);
    assert_eq!(proxy.proxy.in_flight("m1") + proxy.proxy.in_flight("m2"), 0);
}

#[tokio::test]
async fn sessions_stick_to_their_machine() {
    let fake = Fake::new();
    let servers = [
        fake.add("app", "m1", vec![http_service(json!({}))], true)
            .await,
        fake.add("app", "m2", vec![http_service(json!({}))], true)
            .await,
        fake.add("app", "m3", vec![http_service(json!({}))], true)
            .await,
    ];
    let proxy = start_proxy(&fake, test_config()).await;

    // Each new session lands somewhere and then stays there.
    let mut homes = std::collections::HashSet::new();
    for _ in 0..6 {
        let opened = get(proxy.addr, "app.localhost", "/session", &[]).await;
        let session = opened.headers["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let home = opened.body.clone();
        homes.insert(home.clone());
        for _ in 0..10 {
            let reply = get(
                proxy.addr,
                "app.localhost",
                "/",
                &[("mcp-session-id", &session)],
            )
            .await;
            assert_eq!(reply.body, home, "session {session}");
        }
    }
    assert!(homes.len() >= 2, "sessions spread over machines: {homes:?}");

    // A session routed by fly-replay sticks to the replay's target: later
    // requests go straight there, with no new replay.
    let c = client();
    let first = send(
        &c,
        request(
            proxy.addr,
            "app.localhost",
            "/replay?v=instance%3Dm3",
            &[
                ("mcp-session-id", "replayed"),
                ("fly-force-instance-id", "m1"),
            ],
            "",
        ),
    )
    .await;
    assert!(first.body.starts_with("machine=m3"), "{}", first.body);
    let m1_before = servers[0].requests.load(Ordering::SeqCst);
    for _ in 0..10 {
        let plain = get(
            proxy.addr,
            "app.localhost",
            "/",
            &[("mcp-session-id", "replayed")],
        )
        .await;
        assert_eq!(plain.body, "machine=m3");
    }
    assert_eq!(
        servers[0].requests.load(Ordering::SeqCst),
        m1_before,
        "no new replay via m1"
    );

    // The pinned machine goes away (cordoned): the session moves and sticks anew.
    fake.set_cordoned("app", "m3", true);
    let moved = get(
        proxy.addr,
        "app.localhost",
        "/",
        &[("mcp-session-id", "replayed")],
    )
    .await;
    assert_ne!(moved.body, "machine=m3");
    for _ in 0..5 {
        let reply = get(
            proxy.addr,
            "app.localhost",
            "/",
            &[("mcp-session-id", "replayed")],
        )
        .await;
        assert_eq!(reply.body, moved.body);
    }
}

#[tokio::test]
async fn h2_backends_are_spoken_to_in_http2() {
    let fake = Fake::new();
    let svc = json!({"ports": [{"port": 80, "handlers": ["http"], "http_options": {"h2_backend": true}}]});
    let server = fake.add("app", "m1", vec![http_service(svc)], true).await;
    let proxy = start_proxy(&fake, test_config()).await;
    for _ in 0..3 {
        let reply = send(
            &client(),
            request(proxy.addr, "app.localhost", "/", &[], "over h2"),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "machine=m1 body=over h2");
    }
    let seen = server.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["host"], "app.localhost");
    assert_eq!(seen["fly-client-ip"], "127.0.0.1");
}
