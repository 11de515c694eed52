//! Streams, upgrades, idle timeouts, disconnects, health checks and raw
//! TCP, against real loopback servers standing in for machines.

mod common;

use common::*;
use http_body_util::BodyExt;
use roost_proxy::Backends;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test]
async fn sse_events_arrive_one_by_one() {
    let fake = Fake::new();
    fake.add("app", "m1", vec![http_service(json!({}))], true)
        .await;
    let proxy = start_proxy(&fake, test_config()).await;
    for h2 in [false, true] {
        let c = if h2 { h2_client() } else { client() };
        let response = c
            .request(request(
                proxy.addr,
                "app.localhost",
                "/sse?n=5&ms=200",
                &[],
                "",
            ))
            .await
            .unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.into_body();
        let began = Instant::now();
        let mut arrivals = Vec::new();
        let mut text = String::new();
        while let Some(frame) = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a frame within 5s")
        {
            if let Ok(data) = frame.unwrap().into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
                // When each complete event (ending in a blank line) arrived.
                while arrivals.len() < text.matches("\n\n").count() {
                    arrivals.push(began.elapsed());
                }
            }
            assert!(arrivals.len() <= 5, "at most the 5 events: {text:?}");
        }
        assert_eq!(text.matches("data: m1").count(), 5, "{text}");
        assert_eq!(arrivals.len(), 5, "h2={h2}: {arrivals:?}");
        // Unbuffered: each event arrives about when it was sent, not all at the end.
        assert!(arrivals[0] < Duration::from_millis(150), "{arrivals:?}");
        assert!(
            arrivals[4] - arrivals[0] >= Duration::from_millis(700),
            "{arrivals:?}"
        );
    }
    assert_eq!(proxy.proxy.in_flight("m1"), 0);
}

#[tokio::test]
async fn a_client_leaving_mid_stream_leaks_no_load() {
    let fake = Fake::new();
    fake.add("app", "m1", vec![http_service(json!({}))], true)
        .await;
    let proxy = start_proxy(&fake, test_config()).await;
    for round in 0..3 {
        // A raw connection, so dropping it really closes the socket.
        let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        let response = sender
            .send_request(request(
                proxy.addr,
                "app.localhost",
                "/sse?n=100&ms=50",
                &[],
                "",
            ))
            .await
            .unwrap();
        let mut body = response.into_body();
        let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(first.is_data());
        assert_eq!(proxy.proxy.in_flight("m1"), 1, "round {round}");
        drop(body);
        drop(sender);
        conn.abort();
        eventually(5, "in-flight back to 0", || {
            proxy.proxy.in_flight("m1") == 0
        })
        .await;
    }
}

#[tokio::test]
async fn idle_streams_are_closed_after_the_service_idle_timeout() {
    let fake = Fake::new();
    let svc =
        json!({"ports": [{"port": 80, "handlers": ["http"], "http_options": {"idle_timeout": 1}}]});
    fake.add("app", "m1", vec![http_service(svc)], true).await;
    let proxy = start_proxy(&fake, test_config()).await;
    let response = client()
        .request(request(
            proxy.addr,
            "app.localhost",
            "/silent?ms=4000",
            &[],
            "",
        ))
        .await
        .unwrap();
    let began = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect()).await;
    let elapsed = began.elapsed();
    assert!(
        result.expect("closed before the upstream ended").is_err(),
        "the stream is cut, not completed"
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );
    eventually(5, "in-flight back to 0", || {
        proxy.proxy.in_flight("m1") == 0
    })
    .await;

    // The default (10 minutes) keeps a quiet stream open.
    let fake = Fake::new();
    fake.add("app", "m1", vec![http_service(json!({}))], true)
        .await;
    let proxy = start_proxy(&fake, test_config()).await;
    let response = client()
        .request(request(
            proxy.addr,
            "app.localhost",
            "/silent?ms=1500",
            &[],
            "",
        ))
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .unwrap()
        .expect("the quiet stream ends normally");
    assert!(String::from_utf8_lossy(&body.to_bytes()).contains("data: m1 0"));
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let fake = Fake::new();
    fake.add("app", "m1", vec![http_service(json!({}))], true)
        .await;
    let proxy = start_proxy(&fake, test_config()).await;
    let mut req = format!("ws://{}/ws", proxy.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", "app.localhost".parse().unwrap());
    let (mut ws, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .unwrap()
    .expect("websocket handshake through the proxy");
    assert_eq!(response.status(), 101);
    for i in 0..20 {
        let text = format!("hello {i}");
        ws.send(Message::Text(text.clone().into())).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::Text(text.into()));
    }
    ws.send(Message::Binary(vec![0u8, 1, 2, 255].into()))
        .await
        .unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed, Message::Binary(vec![0u8, 1, 2, 255].into()));
    assert_eq!(
        proxy.proxy.in_flight("m1"),
        1,
        "the open connection is load"
    );
    ws.close(None).await.unwrap();
    drop(ws);
    eventually(5, "in-flight back to 0", || {
        proxy.proxy.in_flight("m1") == 0
    })
    .await;
}

#[tokio::test]
async fn failing_health_checks_take_a_machine_out_of_rotation() {
    let fake = Fake::new();
    let svc = json!({"checks": [{"type": "http", "path": "/health", "interval": "100ms", "timeout": "1s"}]});
    let sick = fake
        .add("app", "m1", vec![http_service(svc.clone())], true)
        .await;
    fake.add("app", "m2", vec![http_service(svc)], true).await;
    let proxy = start_proxy(&fake, test_config()).await;
    eventually(5, "checks reported", || {
        let reported = fake.reported.lock().unwrap();
        ["m1", "m2"].iter().all(|id| {
            reported
                .get(*id)
                .is_some_and(|c| c.len() == 1 && c[0].status == "passing")
        })
    })
    .await;
    {
        let reported = fake.reported.lock().unwrap();
        let check = &reported["m1"][0];
        assert!(check.name.starts_with("servicecheck-00-http-"), "{check:?}");
        assert!(check.output.contains("GET /health"), "{check:?}");
    }

    sick.healthy.store(false, Ordering::SeqCst);
    eventually(5, "m1 critical", || {
        fake.reported.lock().unwrap()["m1"][0].status == "critical"
    })
    .await;
    let before = sick.requests.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(
            get(proxy.addr, "app.localhost", "/", &[]).await.body,
            "machine=m2"
        );
    }
    assert_eq!(sick.requests.load(Ordering::SeqCst), before);
    let forced = get(
        proxy.addr,
        "app.localhost",
        "/",
        &[("fly-force-instance-id", "m1")],
    )
    .await;
    assert_eq!(forced.status, 503);
    assert!(
        forced.body.contains("failing its health checks"),
        "{}",
        forced.body
    );

    sick.healthy.store(true, Ordering::SeqCst);
    eventually(5, "m1 passing", || {
        fake.reported.lock().unwrap()["m1"][0].status == "passing"
    })
    .await;
    let forced = get(
        proxy.addr,
        "app.localhost",
        "/",
        &[("fly-force-instance-id", "m1")],
    )
    .await;
    assert_eq!(forced.body, "machine=m1");

    // A stopped machine's results are cleared.
    use roost_proxy::Backends;
    fake.stop("app", "m1").await.unwrap();
    eventually(5, "m1 checks cleared", || {
        fake.reported.lock().unwrap()["m1"].is_empty()
    })
    .await;
}

#[tokio::test]
async fn tcp_health_checks_and_machine_checks() {
    let fake = Fake::new();
    let svc = json!({"checks": [{"type": "tcp", "interval": "100ms"}]});
    fake.add("app", "m1", vec![http_service(svc)], true).await;
    let proxy = start_proxy(&fake, test_config()).await;
    eventually(5, "tcp check passing", || {
        fake.reported.lock().unwrap().get("m1").is_some_and(|c| {
            c.first()
                .is_some_and(|c| c.status == "passing" && c.output.starts_with("connected to"))
        })
    })
    .await;
    drop(proxy);
}

#[tokio::test]
async fn the_supervisor_sleeps_until_a_machine_starts() {
    let fake = Fake::new();
    let svc = json!({"autostop": "stop", "checks": [{"type": "tcp", "interval": "100ms"}]});
    fake.add("app", "m1", vec![http_service(svc)], false).await;
    let proxy = start_proxy(&fake, test_config()).await;
    // Its first round, a tick (50 ms) after the start, sees nothing started:
    // nothing to check or stop, so nothing falls due.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_first = fake.change_reads.load(Ordering::SeqCst);
    assert!(after_first > 0, "the first round read the change counter");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.change_reads.load(Ordering::SeqCst),
        after_first,
        "no round runs while nothing changes"
    );
    // A start wakes it, and the machine's check runs.
    fake.start("app", "m1").await.unwrap();
    eventually(5, "tcp check passing", || {
        fake.reported
            .lock()
            .unwrap()
            .get("m1")
            .is_some_and(|c| c.first().is_some_and(|c| c.status == "passing"))
    })
    .await;
    drop(proxy);
}

#[tokio::test]
async fn raw_tcp_services_are_spliced() {
    let fake = Fake::new();
    // The "machine" program here is the test's HTTP server; raw TCP carries
    // its bytes unchanged, so an HTTP/1.0 exchange over the splice proves it.
    fake.add(
        "db",
        "m1",
        vec![service(
            json!({"internal_port": 0, "ports": [{"port": 5432}]}),
        )],
        false,
    )
    .await;
    let proxy = start_proxy(&fake, test_config()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = proxy.proxy.clone();
    let task = tokio::spawn(async move {
        serving
            .serve_tcp(listener, "db", 5432, None, std::future::pending())
            .await
            .unwrap()
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let reply = http10_exchange(&mut stream).await.unwrap();
    assert!(
        reply.starts_with("HTTP/1.0 200") && reply.ends_with("machine=m1"),
        "{reply}"
    );
    assert_eq!(
        fake.starts.load(Ordering::SeqCst),
        1,
        "autostarted for the connection"
    );
    drop(stream);
    eventually(5, "in-flight back to 0", || {
        proxy.proxy.in_flight("m1") == 0
    })
    .await;
    task.abort();
}
