//! End to end: a real `roost up` pulling from a real `docker-registry` on loopback, through the
//! API (machine create pulls what it lacks; pull, rm, prune) and the CLI; HTTPS registries
//! signed by a private CA; a pull interrupted by killing the daemon.

mod common;

use common::{Daemon, APP};
use reqwest::Method;
use roost_testkit::layer::LayerBuilder;
use roost_testkit::oci::{self, ImageSpec};
use roost_testkit::registry::{Registry, TestCa};
use roost_types::{CreateMachineRequest, MachineConfig, MachineInit};
use serde_json::json;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pushes busybox as `busybox:latest` and a two-layer image (busybox plus a layer deleting
/// `/etc/group` and adding `/srv/hello`) as `app:v1`.
fn registry_with_images(dir: &std::path::Path) -> Registry {
    let registry = Registry::start(dir);
    let busybox = roost_testkit::busybox_layout(dir);
    registry.push(&busybox, "latest", "busybox", "latest", &[]);
    let mut extra = LayerBuilder::new();
    extra
        .raw(tar::EntryType::Regular, b"etc/.wh.group", b"", b"")
        .dir("srv", 0o755)
        .file("srv/hello", 0o644, b"hello from layer two\n");
    let layers = vec![roost_testkit::busybox_layer(), extra.into_tar()];
    let layout = dir.join("app-oci");
    let manifest = oci::write_image(
        &layout,
        &ImageSpec {
            config: json!({
                "Cmd": ["sh", "-c", "exec sleep 1000"],
                "Env": ["PATH=/bin", "GREETING=hi"],
                "WorkingDir": "/srv",
            }),
            layers,
            gzip: true,
            docker: false,
        },
    );
    oci::write_index(&layout, vec![manifest.tagged("v1")]);
    registry.push(&layout, "v1", "app", "v1", &[]);
    registry
}

fn machine(image: &str) -> CreateMachineRequest {
    CreateMachineRequest {
        config: MachineConfig {
            image: image.into(),
            init: Some(MachineInit {
                cmd: vec!["sleep".into(), "1000".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `POST /v1/images/pull` of `image`: the status and the JSON answer.
async fn pull(daemon: &Daemon, image: &str) -> (u16, serde_json::Value) {
    daemon
        .call(
            Method::POST,
            "/v1/images/pull",
            Some(json!({ "image": image })),
        )
        .await
}

/// Runs `script` in a new machine of `image` (pulled if the store lacks it), then destroys the
/// machine.
async fn run_in_machine(daemon: &Daemon, image: &str, script: &str) -> roost_types::ExecResponse {
    let created = daemon
        .client()
        .create_machine(APP, &machine(image))
        .await
        .unwrap_or_else(|e| panic!("create from {image}: {e}"));
    daemon.wait_state(&created.id, "started", 30).await;
    let out = daemon.sh(&created.id, script).await;
    daemon
        .client()
        .destroy_machine(APP, &created.id, true)
        .await
        .expect("destroy");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn machines_run_images_pulled_from_a_registry() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let registry = registry_with_images(scratch.path());
    let daemon = Daemon::start_with_args(&["--insecure-registry", &registry.addr]).await;
    let client = daemon.client();
    let app_ref = format!("{}/app:v1", registry.addr);

    // Create pulls the image it lacks; the image's config (workdir, env) applies.
    let mut request = machine(&app_ref);
    request.config.init = None;
    let first = client.create_machine(APP, &request).await.expect("create");
    daemon.wait_state(&first.id, "started", 30).await;
    let out = daemon
        .sh(
            &first.id,
            "pwd; echo $GREETING; cat hello; ls /etc/group || echo gone",
        )
        .await;
    assert_eq!(
        out.stdout, "/srv\nhi\nhello from layer two\ngone\n",
        "{out:?}"
    );

    // A second machine of the same image reads no layer blob again.
    let blobs = daemon.data_dir().join("images/blobs/sha256");
    let before = std::fs::read_dir(&blobs).expect("blobs").count();
    let second = client
        .create_machine(APP, &machine(&app_ref))
        .await
        .expect("second create");
    daemon.wait_state(&second.id, "started", 30).await;
    assert_eq!(std::fs::read_dir(&blobs).expect("blobs").count(), before);

    // The image cannot be removed while machines use it.
    let (status, body) = daemon
        .call(Method::DELETE, &format!("/v1/images/{app_ref}"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains(&first.id),
        "{body}"
    );

    for id in [&first.id, &second.id] {
        client
            .destroy_machine(APP, id, true)
            .await
            .expect("destroy");
    }
    let (status, body) = daemon
        .call(Method::DELETE, &format!("/v1/images/{app_ref}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, report) = daemon.call(Method::POST, "/v1/images/prune", None).await;
    assert_eq!(status, 200, "{report}");
    // Layer two went with app:v1; the busybox layer stays, the imported busybox uses it.
    assert_eq!(report["layers"], 1, "{report}");
    assert_eq!(
        std::fs::read_dir(daemon.data_dir().join("images/layers/sha256"))
            .expect("layers")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_failures_are_json_errors_that_leave_nothing() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let registry = registry_with_images(scratch.path());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .to_string();
    let daemon = Daemon::start_with_args(&[
        "--insecure-registry",
        &registry.addr,
        "--insecure-registry",
        &closed,
    ])
    .await;
    let images_before = daemon.client().list_images().await.expect("list");
    for (image, status, needle) in [
        (
            format!("{}/app:nope", registry.addr),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("{}/nothing:latest", registry.addr),
            404,
            "has no image",
        ),
        (format!("{closed}/app:v1"), 502, "cannot reach"),
        ("Bad/Reference".to_owned(), 400, "invalid image reference"),
        (
            registry.addr.replace("127.0.0.1", "localhost") + "/app:v1",
            502,
            "--insecure-registry",
        ),
    ] {
        let (got, body) = pull(&daemon, &image).await;
        assert_eq!(got, status, "{image}: {body}");
        let message = body["error"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{image}: {message}");

        let (got, body) = daemon
            .call(
                Method::POST,
                &format!("/v1/apps/{APP}/machines"),
                Some(serde_json::to_value(machine(&image)).expect("json")),
            )
            .await;
        assert_eq!(got, status, "create from {image}: {body}");
    }
    assert!(daemon
        .client()
        .list_machines(APP)
        .await
        .expect("machines")
        .is_empty());
    assert_eq!(
        daemon.client().list_images().await.expect("list"),
        images_before
    );
    let tmp = daemon.data_dir().join("images/tmp");
    assert_eq!(std::fs::read_dir(tmp).expect("tmp").count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_pulls_lists_removes_and_prunes() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let registry = registry_with_images(scratch.path());
    let daemon = Daemon::start_with_args(&["--insecure-registry", &registry.addr]).await;
    let roost = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_roost"))
            .args(args)
            .env("ROOST_API_URL", &daemon.url)
            .env("ROOST_API_TOKEN", &daemon.token)
            .output()
            .expect("run roost");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let app_ref = format!("{}/app:v1", registry.addr);

    let (ok, out, err) = roost(&["image", "pull", &app_ref]);
    assert!(ok, "{err}");
    // Not a terminal: one plain line per layer state, then the image.
    assert!(
        out.contains(" done (") || out.contains(" cached ("),
        "{out}"
    );
    let last = out.lines().last().unwrap_or("");
    assert!(last.starts_with(&format!("{app_ref} sha256:")), "{out}");

    let (ok, out, err) = roost(&["--json", "image", "pull", &app_ref]);
    assert!(ok, "{err}");
    let image: serde_json::Value = serde_json::from_str(&out).expect("json output only");
    assert_eq!(image["reference"], app_ref.as_str());

    let (ok, out, _) = roost(&["image", "list"]);
    assert!(ok && out.contains(&app_ref), "{out}");

    let (ok, _, err) = roost(&["image", "pull", &format!("{}/app:nope", registry.addr)]);
    assert!(!ok);
    assert!(err.contains("MANIFEST_UNKNOWN"), "{err}");

    let (ok, out, err) = roost(&["image", "rm", &app_ref]);
    assert!(ok, "{err}");
    assert!(out.contains("removed image"), "{out}");
    let (ok, out, err) = roost(&["--json", "image", "prune"]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("prune json");
    assert_eq!(report["layers"], 1, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_registries_need_their_ca_and_plain_http_needs_insecure() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let ca_dir = scratch.path().join("ca");
    std::fs::create_dir(&ca_dir).expect("ca dir");
    let ca = TestCa::create(&ca_dir);
    let tls = Registry::start_tls(scratch.path(), &ca);
    let busybox = roost_testkit::busybox_layout(scratch.path());
    tls.push(&busybox, "latest", "busybox", "latest", &[]);
    let plain = Registry::start(scratch.path());
    let tls_ref = format!("{}/busybox:latest", tls.addr);

    // Without the CA the certificate is refused, and the user is pointed at --registry-ca;
    // a plain HTTP registry not listed as insecure is refused with a pointer to
    // --insecure-registry (it is only ever spoken to over TLS).
    let untrusting = Daemon::start().await;
    for (image, needle) in [
        (tls_ref.clone(), "--registry-ca FILE".to_owned()),
        (
            format!("{}/busybox:latest", plain.addr),
            format!("--insecure-registry {}", plain.addr),
        ),
    ] {
        let (status, body) = pull(&untrusting, &image).await;
        assert_eq!(status, 502, "{image}: {body}");
        let message = body["error"].as_str().unwrap_or("");
        assert!(message.contains(&needle), "{image}: {message}");
    }
    drop(untrusting);

    let ca_file = ca.cert.to_string_lossy().into_owned();
    let daemon = Daemon::start_with_args(&["--registry-ca", &ca_file]).await;
    let out = run_in_machine(&daemon, &tls_ref, "echo over tls").await;
    assert_eq!(out.stdout, "over tls\n", "{out:?}");
}

/// Size of the incompressible layer of the image the interrupted pull fetches: at the proxy's
/// slow rate its download takes seconds, ample time to kill the daemon in the middle of it.
const BIG_LAYER: usize = 8 << 20;

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_killed_with_the_daemon_leaves_nothing_and_the_next_one_completes() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let registry = Registry::start(scratch.path());
    let mut random = Vec::with_capacity(BIG_LAYER);
    std::fs::File::open("/dev/urandom")
        .and_then(|f| f.take(BIG_LAYER as u64).read_to_end(&mut random))
        .expect("random bytes");
    let mut big = LayerBuilder::new();
    big.file("big", 0o644, &random);
    let layout = scratch.path().join("big-oci");
    let manifest = oci::write_image(
        &layout,
        &ImageSpec {
            config: json!({ "Cmd": ["sh"], "Env": ["PATH=/bin"] }),
            layers: vec![roost_testkit::busybox_layer(), big.into_tar()],
            gzip: false,
            docker: false,
        },
    );
    oci::write_index(&layout, vec![manifest.tagged("v1")]);
    registry.push(&layout, "v1", "big", "v1", &[]);
    // skopeo compresses layers as it pushes: the digests that count are the registry's.
    let pushed: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/v2/big/manifests/v1", registry.addr))
        .header(
            reqwest::header::ACCEPT,
            "application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("pushed manifest")
        .json()
        .await
        .expect("manifest json");
    let layer_hex = |i: usize| {
        pushed["layers"][i]["digest"]
            .as_str()
            .expect("layer digest")
            .replace("sha256:", "")
    };
    let (small_hex, big_hex) = (layer_hex(0), layer_hex(1));
    let proxy = SlowProxy::start(&registry.addr);
    let mut daemon = Daemon::start_with_args(&["--insecure-registry", &proxy.addr]).await;
    let reference = format!("{}/big:v1", proxy.addr);
    let store = daemon.data_dir().join("images");

    let interrupted = tokio::spawn(
        daemon
            .http(Method::POST, "/v1/images/pull")
            .json(&json!({ "image": reference }))
            .send(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !partial_blob_over(&store.join("tmp"), 1 << 20) {
        assert!(
            Instant::now() < deadline,
            "no layer download under way after 20s:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: no chance to clean up, as in a crash or an OOM kill.
    daemon.kill();
    assert!(
        partial_blob_over(&store.join("tmp"), 1 << 20),
        "the kill left the partial download in tmp/"
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), interrupted)
        .await
        .expect("the pull request ends with the daemon")
        .expect("pull task");
    assert!(answer.is_err(), "the killed daemon answered: {answer:?}");

    daemon.spawn(None).await;
    assert_eq!(entries(&store.join("tmp")), HashSet::new());
    let images = daemon.client().list_images().await.expect("list");
    assert!(
        images.iter().all(|i| i["reference"] != reference.as_str()),
        "{images:?}"
    );
    assert!(!entries(&store.join("blobs/sha256")).contains(&big_hex));
    // Layer directories are only ever complete ones: those of the listed images, and the
    // small layer if its download and unpacking finished before the kill.
    let mut complete: HashSet<String> = images
        .iter()
        .flat_map(|i| i["layers"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l.as_str().map(|l| l.replace("sha256:", "")))
        .collect();
    complete.insert(small_hex);
    let layers = entries(&store.join("layers/sha256"));
    assert!(layers.is_subset(&complete), "{layers:?} ⊄ {complete:?}");
    assert!(!layers.contains(&big_hex));

    proxy.full_speed();
    let (status, body) = pull(&daemon, &reference).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["layers"][1], format!("sha256:{big_hex}"), "{body}");
    let out = run_in_machine(&daemon, &reference, "wc -c < /big").await;
    assert_eq!(out.stdout.trim(), BIG_LAYER.to_string(), "{out:?}");
}

/// Whether `tmp` holds a blob being downloaded that is over `bytes` long.
fn partial_blob_over(tmp: &Path, bytes: u64) -> bool {
    std::fs::read_dir(tmp)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name().to_string_lossy().starts_with("blob-")
                && e.metadata().is_ok_and(|m| m.len() > bytes)
        })
}

fn entries(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .expect("store dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// A TCP relay in front of a registry that trickles responses (about 2 MiB/s) until told to
/// go full speed: on loopback a download is otherwise over before a test can act during it.
struct SlowProxy {
    /// `127.0.0.1:PORT`, the registry part of references through the proxy.
    addr: String,
    slow: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

/// Response bytes relayed between two pauses while slow.
const TRICKLE_CHUNK: usize = 16 << 10;
const TRICKLE_PAUSE: Duration = Duration::from_millis(8);

impl SlowProxy {
    fn start(upstream: &str) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let proxy = SlowProxy {
            addr: listener.local_addr().expect("proxy addr").to_string(),
            slow: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (upstream, slow, stop) = (
            upstream.to_owned(),
            Arc::clone(&proxy.slow),
            Arc::clone(&proxy.stop),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(&upstream)) else {
                    continue;
                };
                let slow = Arc::clone(&slow);
                std::thread::spawn(move || trickle(client, server, &slow));
            }
        });
        proxy
    }

    fn full_speed(&self) {
        self.slow.store(false, Ordering::Relaxed);
    }
}

/// Ends the accept loop: it sees `stop` at the next connection, which this makes.
impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Relays one connection: requests as they come, responses in [`TRICKLE_CHUNK`]s with a
/// pause after each while `slow`. Either side closing ends both.
fn trickle(client: TcpStream, server: TcpStream, slow: &AtomicBool) {
    let (Ok(mut requests), Ok(mut upstream)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut requests, &mut upstream);
        let _ = upstream.shutdown(Shutdown::Write);
    });
    let (mut server, mut client) = (server, client);
    let mut buf = vec![0u8; TRICKLE_CHUNK];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        if slow.load(Ordering::Relaxed) {
            std::thread::sleep(TRICKLE_PAUSE);
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}
