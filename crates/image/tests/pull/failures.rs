//! Pulls that fail say what failed and leave nothing a later create could use.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

use roost_image::ImageError;
use roost_testkit::layer::LayerBuilder;
use serde_json::json;

use crate::common::{noise, write_layout, Fixture};

/// Pushes a one-layer image of 2 MiB of incompressible content as `noise:latest`.
fn push_noise(fx: &Fixture, registry: &roost_testkit::registry::Registry) -> String {
    let layout = fx.layout_path("noise");
    let mut layer = LayerBuilder::new();
    layer.file("noise", 0o644, &noise(2 << 20));
    write_layout(&layout, json!({ "Cmd": ["sh"] }), vec![layer.into_tar()]);
    registry.push(&layout, "latest", "noise", "latest", &[]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("index json");
    let manifest = index["manifests"][0]["digest"].as_str().expect("digest");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(manifest.trim_start_matches("sha256:")),
        )
        .expect("manifest"),
    )
    .expect("manifest json");
    manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_owned()
}

#[test]
fn unknown_tags_and_repositories_are_404s_with_the_reason() {
    let fx = Fixture::new();
    let registry = fx.registry();
    push_noise(&fx, &registry);
    let puller = fx.puller(&[&registry]);
    for reference in [
        format!("{}/noise:nope", registry.addr),
        format!("{}/nothing-here:latest", registry.addr),
    ] {
        let (result, _) = fx.pull(&puller, &reference);
        let err = result.expect_err("missing image");
        assert!(
            matches!(err, ImageError::NotInRegistry { .. }),
            "{reference}: {err}"
        );
        assert!(err.to_string().contains("UNKNOWN"), "{err}");
        assert!(err.to_string().contains(&reference), "{err}");
    }
    fx.assert_nothing_left();
}

#[test]
fn unreachable_registries_and_plain_http_without_insecure() {
    let fx = Fixture::new();
    let registry = fx.registry();
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .to_string();
    let puller = roost_image::Puller::new(roost_image::RegistryConfig {
        insecure: vec![closed.clone()],
        ..Default::default()
    })
    .expect("puller");
    let (result, _) = fx.pull(&puller, &format!("{closed}/app:latest"));
    let err = result.expect_err("nothing listens");
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
    assert!(err.to_string().contains("cannot reach"), "{err}");

    let (result, _) = fx.pull(&puller, &format!("{}/app:latest", registry.addr));
    let err = result.expect_err("https to a plain HTTP registry");
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("--insecure-registry {}", registry.addr)),
        "{err}"
    );
    fx.assert_nothing_left();
}

#[test]
fn a_corrupt_layer_is_rejected_and_not_kept() {
    let fx = Fixture::new();
    let registry = fx.registry();
    let layer = push_noise(&fx, &registry);
    let data = registry.blob_data(&layer);
    let mut bytes = std::fs::read(&data).expect("registry blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).expect("corrupt blob");

    let (result, _) = fx.pull(
        &fx.puller(&[&registry]),
        &format!("{}/noise:latest", registry.addr),
    );
    let err = result.expect_err("corrupt layer");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&layer), "{err}");
    fx.assert_nothing_left();
    assert_eq!(fx.entries("blobs/sha256"), Vec::<String>::new());
}

#[test]
fn bad_references_are_refused_before_any_request() {
    let fx = Fixture::new();
    let puller = roost_image::Puller::new(Default::default()).expect("puller");
    for reference in [
        "Upper/case:1",
        "127.0.0.1:1/app:",
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let (result, _) = fx.pull(&puller, reference);
        let err = result.expect_err("bad reference");
        assert!(
            matches!(err, ImageError::InvalidReference { .. }),
            "{reference}: {err}"
        );
    }
}

#[test]
fn a_dropped_connection_leaves_nothing_and_the_next_pull_completes() {
    let fx = Fixture::new();
    let registry = fx.registry();
    push_noise(&fx, &registry);
    let proxy = CuttingProxy::start(&registry.addr, 256 << 10);
    let puller = roost_image::Puller::new(roost_image::RegistryConfig {
        insecure: vec![proxy.clone(), registry.addr.clone()],
        ..Default::default()
    })
    .expect("puller");

    let (result, _) = fx.pull(&puller, &format!("{proxy}/noise:latest"));
    let err = result.expect_err("cut download");
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
    assert!(err.to_string().contains("broke off"), "{err}");
    fx.assert_nothing_left();

    let (result, _) = fx.pull(&puller, &format!("{}/noise:latest", registry.addr));
    result.expect("pull after the cut");
    assert_eq!(fx.entries("tmp"), Vec::<String>::new());
}

/// A TCP proxy to `upstream` that closes each connection after relaying `budget` bytes of
/// response: manifests and configs get through, a large layer is cut off mid-body.
struct CuttingProxy;

impl CuttingProxy {
    fn start(upstream: &str, budget: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let upstream = upstream.to_owned();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let upstream = upstream.clone();
                thread::spawn(move || relay(client, &upstream, budget));
            }
        });
        addr
    }
}

fn relay(client: TcpStream, upstream: &str, budget: usize) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
    });
    let (mut server, mut client) = (server, client);
    let mut left = budget;
    let mut buf = [0u8; 16 << 10];
    while left > 0 {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n.min(left),
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        left -= n;
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}
