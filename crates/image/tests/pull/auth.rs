//! Authenticated pulls: HTTP basic against docker-registry's htpasswd auth, and the bearer
//! token flow through a token service in front of a registry.

use base64::Engine as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use roost_image::{Credentials, ImageError, PullOptions, Puller, RegistryConfig};
use roost_testkit::registry::Registry;

use crate::common::Fixture;

const USER: &str = "robot";
const PASSWORD: &str = "s3cret-pass";

fn credentials(password: &str) -> Credentials {
    Credentials {
        username: USER.into(),
        password: password.into(),
    }
}

#[test]
fn basic_auth_needs_the_right_credentials() {
    let fx = Fixture::new();
    let registry = Registry::start_with_auth(fx.dir.path(), USER, PASSWORD);
    let layout = roost_testkit::busybox_layout(fx.dir.path());
    registry.push(&layout, "latest", "private/busybox", "latest", &[]);
    let reference = format!("{}/private/busybox:latest", registry.addr);
    let puller = fx.puller(&[&registry]);

    let err = puller
        .pull(&fx.store, &reference, &PullOptions::default())
        .expect_err("anonymous pull");
    assert!(matches!(err, ImageError::RegistryAuth { .. }), "{err}");
    assert!(err.to_string().contains("none were given"), "{err}");

    let wrong = PullOptions {
        credentials: Some(credentials("wrong")),
        ..PullOptions::default()
    };
    let err = puller
        .pull(&fx.store, &reference, &wrong)
        .expect_err("wrong password");
    assert!(matches!(err, ImageError::RegistryAuth { .. }), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!err.to_string().contains("wrong"), "no password in {err}");
    fx.assert_nothing_left();

    let right = PullOptions {
        credentials: Some(credentials(PASSWORD)),
        ..PullOptions::default()
    };
    puller
        .pull(&fx.store, &reference, &right)
        .expect("pull with credentials");

    let fresh = Fixture::new();
    let configured = Puller::new(RegistryConfig {
        insecure: vec![registry.addr.clone()],
        credentials: [(registry.addr.clone(), credentials(PASSWORD))].into(),
        ..RegistryConfig::default()
    })
    .expect("puller");
    configured
        .pull(&fresh.store, &reference, &PullOptions::default())
        .expect("pull with the host's credentials");
}

#[test]
fn bearer_tokens_are_fetched_from_the_challenge_realm() {
    let fx = Fixture::new();
    let registry = fx.registry();
    let layout = roost_testkit::busybox_layout(fx.dir.path());
    registry.push(&layout, "latest", "busybox", "latest", &[]);
    let front = TokenFront::start(&registry.addr);
    let reference = format!("{front}/busybox:latest");
    let puller = Puller::new(RegistryConfig {
        insecure: vec![front.clone()],
        ..RegistryConfig::default()
    })
    .expect("puller");

    let err = puller
        .pull(&fx.store, &reference, &PullOptions::default())
        .expect_err("anonymous token refused");
    assert!(matches!(err, ImageError::RegistryAuth { .. }), "{err}");
    assert!(err.to_string().contains("token service"), "{err}");

    let options = PullOptions {
        credentials: Some(credentials(PASSWORD)),
        ..PullOptions::default()
    };
    let image = puller
        .pull(&fx.store, &reference, &options)
        .expect("pull with a bearer token");
    assert!(fx.store.layer_paths(&image).expect("layers")[0]
        .join("bin/busybox")
        .is_file());
}

/// A registry front that speaks the token flow: `/v2/...` without `Bearer TOKEN` gets a 401
/// challenge naming `/token` as realm; `/token` hands out TOKEN for [`USER`]/[`PASSWORD`]
/// only; authorized requests are relayed to the real registry behind it.
struct TokenFront;

const TOKEN: &str = "test-token-1234";

impl TokenFront {
    fn start(upstream: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind front");
        let addr = listener.local_addr().expect("front addr").to_string();
        let upstream = upstream.to_owned();
        let realm = format!("http://{addr}/token");
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (upstream, realm) = (upstream.clone(), realm.clone());
                thread::spawn(move || serve(stream, &upstream, &realm));
            }
        });
        addr
    }
}

fn serve(stream: TcpStream, upstream: &str, realm: &str) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = write_half;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        let response = if path.starts_with("/token") {
            if header("authorization") == Some(basic.as_str()) && path.contains("scope=repository")
            {
                respond(200, &[], format!("{{\"token\":\"{TOKEN}\"}}").as_bytes())
            } else {
                respond(401, &[], b"{}")
            }
        } else if header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            let challenge = format!(
                "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\",scope=\"repository:busybox:pull\""
            );
            respond(401, &[challenge], b"")
        } else {
            relay(upstream, &path, header("accept"))
        };
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}

fn relay(upstream: &str, path: &str, accept: Option<&str>) -> Vec<u8> {
    let mut request = reqwest::blocking::Client::new().get(format!("http://{upstream}{path}"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let Ok(mut response) = request.send() else {
        return respond(502, &[], b"");
    };
    let mut extra = Vec::new();
    for name in ["content-type", "docker-content-digest"] {
        if let Some(value) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
            extra.push(format!("{name}: {value}"));
        }
    }
    let mut body = Vec::new();
    let _ = response.read_to_end(&mut body);
    respond(response.status().as_u16(), &extra, &body)
}

fn respond(status: u16, headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for header in headers {
        out.push_str(header);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}
