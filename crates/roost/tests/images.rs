//! End to end: a real `roost up` pulling from a real `docker-registry` on loopback, through the
//! API (machine create pulls what it lacks; pull, rm, prune) and the CLI.

mod common;

use common::{Daemon, APP};
use reqwest::Method;
use roost_testkit::layer::LayerBuilder;
use roost_testkit::oci::{self, ImageSpec};
use roost_testkit::registry::Registry;
use roost_types::{CreateMachineRequest, MachineConfig, MachineInit};
use serde_json::json;
use std::process::Command;

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
        let (got, body) = daemon
            .call(
                Method::POST,
                "/v1/images/pull",
                Some(json!({ "image": image })),
            )
            .await;
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
