//! HTTPS: registries are spoken to over TLS with the system roots plus the configured CA file,
//! and over plain HTTP only when the host lists them as insecure.

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use roost_image::{ImageError, Puller, RegistryConfig};
use roost_testkit::registry::{Registry, TestCa};

use crate::common::Fixture;

#[test]
fn a_tls_registry_is_trusted_only_with_its_ca() {
    let fx = Fixture::new();
    let ca = TestCa::create(&fx.path("ca"));
    let registry = Registry::start_tls(fx.dir.path(), &ca);
    let layout = roost_testkit::busybox_layout(fx.dir.path());
    registry.push(&layout, "latest", "busybox", "latest", &[]);
    let reference = format!("{}/busybox:latest", registry.addr);

    let untrusting = Puller::new(RegistryConfig::default()).expect("puller");
    let (result, _) = fx.pull(&untrusting, &reference);
    let err = result.expect_err("certificate of an unknown CA");
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("--registry-ca"), "{message}");
    assert!(!message.contains("--insecure-registry"), "{message}");
    fx.assert_nothing_left();

    let trusting = Puller::new(RegistryConfig {
        ca_file: Some(ca.cert.clone()),
        ..RegistryConfig::default()
    })
    .expect("puller");
    let (image, _) = fx.pull(&trusting, &reference);
    let image = image.expect("pull with the CA");
    assert!(fx.store.layer_paths(&image).expect("layers")[0]
        .join("bin/busybox")
        .is_file());
}

#[test]
fn a_ca_file_without_certificates_is_refused_up_front() {
    let fx = Fixture::new();
    let empty = fx.path("ca").join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let err = Puller::new(RegistryConfig {
        ca_file: Some(empty.clone()),
        ..RegistryConfig::default()
    })
    .expect_err("no certificate in the CA file");
    assert!(matches!(err, ImageError::Malformed { .. }), "{err}");
    assert!(
        err.to_string().contains(&empty.display().to_string()),
        "{err}"
    );
}

/// A registry not listed as insecure only ever sees TLS handshakes: no request goes out over
/// plain HTTP, not even as a fallback after HTTPS failed.
#[test]
fn registries_not_listed_as_insecure_never_see_plain_http() {
    let fx = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let openings = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let seen = Arc::clone(&openings);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut opening = [0u8; 5];
            let n = stream.read(&mut opening).unwrap_or(0);
            seen.lock().expect("openings").push(opening[..n].to_vec());
            // Dropping the stream closes it: the handshake fails.
        }
    });

    let puller = Puller::new(RegistryConfig::default()).expect("puller");
    let (result, _) = fx.pull(&puller, &format!("{addr}/app:latest"));
    let err = result.expect_err("nothing speaks TLS there");
    assert!(
        err.to_string()
            .contains(&format!("--insecure-registry {addr}")),
        "{err}"
    );
    let openings = openings.lock().expect("openings");
    assert!(!openings.is_empty(), "the registry was never contacted");
    for opening in openings.iter() {
        // A TLS record header: handshake (22), protocol major version 3.
        assert_eq!(opening.get(..2), Some(&[0x16, 0x03][..]), "{opening:?}");
    }
    fx.assert_nothing_left();
}
