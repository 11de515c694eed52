//! The HTTP server around the S3 service (`roost_objects::serve`), over a
//! real socket.

mod common;

use common::{Harness, Req};
use std::io::{Read, Write};
use std::time::Duration;

/// Sends `head` on a new connection; returns everything the server sent
/// until it closed the connection or went quiet for a second.
fn exchange(addr: std::net::SocketAddr, head: &str) -> (String, bool) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

/// A PUT refused before its body is read (here: unsigned, to a private
/// bucket, so AccessDenied)
/// must not leave the connection open: the client, which asked for
/// `100-continue`, never sends the body, and the server would otherwise
/// take the start of the next request for it.
#[tokio::test]
async fn an_error_before_the_body_is_read_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path(), None, &[]);
    harness.ok(Req::bucket(http::Method::PUT, "bucket")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(roost_objects::serve(
        listener,
        harness.service(),
        std::future::pending(),
    ));

    let refused_put = "PUT /bucket/key HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    let (answer, closed) = tokio::task::spawn_blocking(move || exchange(addr, refused_put))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(closed, "the connection stayed open: {answer}");

    // A refused request without a body keeps its connection.
    let refused_get = "GET /bucket/key HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let (answer, closed) = tokio::task::spawn_blocking(move || exchange(addr, refused_get))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        !closed,
        "a bodiless request's connection was closed: {answer}"
    );
}
