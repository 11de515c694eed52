//! What pulls produce: records, unpacked layers, configs, platform choice, layer sharing.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::Barrier;

use roost_image::LayerStatus;
use roost_testkit::layer::LayerBuilder;
use roost_testkit::oci::{self, ImageSpec};
use serde_json::json;

use crate::common::{cmd_config, noise, whiteout_layers, write_layout, Fixture};

#[test]
fn busybox_is_pulled_once_then_comes_from_the_store() {
    let fx = Fixture::new();
    let registry = fx.registry();
    let layout = roost_testkit::busybox_layout(fx.dir.path());
    registry.push(&layout, "latest", "busybox", "latest", &[]);
    let puller = fx.puller(&[&registry]);
    let reference = format!("{}/busybox:latest", registry.addr);

    let (image, statuses) = fx.pull(&puller, &reference);
    let image = image.expect("pull");
    assert_eq!(image.reference, reference);
    assert_eq!(image.config.cmd, vec!["sh"]);
    let layers = fx.store.layer_paths(&image).expect("layers");
    assert!(layers[0].join("bin/busybox").is_file());
    for seen in statuses.values() {
        assert_eq!(
            seen,
            &[
                LayerStatus::Downloading,
                LayerStatus::Unpacking,
                LayerStatus::Done
            ]
        );
    }
    assert_eq!(fx.store.get(&reference).expect("get"), image);

    let (again, statuses) = fx.pull(&puller, &reference);
    assert_eq!(again.expect("second pull").digest, image.digest);
    assert!(statuses.values().all(|s| s == &[LayerStatus::Cached]));

    let pinned = format!("{}/busybox@{}", registry.addr, image.digest);
    let (by_digest, statuses) = fx.pull(&puller, &pinned);
    assert_eq!(by_digest.expect("pull by digest").digest, image.digest);
    assert!(statuses.values().all(|s| s == &[LayerStatus::Cached]));
    assert_eq!(
        fx.store.get(&pinned).expect("get pinned").digest,
        image.digest
    );
}

#[test]
fn docker_schema2_with_whiteouts_and_config() {
    let fx = Fixture::new();
    let registry = fx.registry();
    let layout = fx.layout_path("whiteouts");
    write_layout(&layout, cmd_config("serve"), whiteout_layers());
    registry.push(&layout, "latest", "team/app", "v2", &["--format", "v2s2"]);
    let puller = fx.puller(&[&registry]);

    let (image, _) = fx.pull(&puller, &format!("{}/team/app:v2", registry.addr));
    let image = image.expect("pull");
    assert_eq!(image.config.cmd, vec!["serve"]);
    assert_eq!(image.config.user.as_deref(), Some("1000:1000"));
    assert_eq!(image.config.exposed_ports, vec!["8080/tcp"]);
    let manifest = fs::read(
        fx.store
            .root()
            .join("blobs/sha256")
            .join(image.digest.trim_start_matches("sha256:")),
    )
    .expect("manifest blob");
    assert!(String::from_utf8_lossy(&manifest)
        .contains("application/vnd.docker.distribution.manifest.v2+json"));

    let layers = fx.store.layer_paths(&image).expect("layers");
    let whiteout = fs::symlink_metadata(layers[1].join("etc/motd")).expect("whiteout");
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert_eq!(
        xattr::get(layers[1].join("srv"), "trusted.overlay.opaque").expect("xattr"),
        Some(b"y".to_vec())
    );
    assert_eq!(
        fs::read(layers[1].join("srv/new")).expect("new file"),
        b"new\n"
    );
    assert!(layers[0].join("srv/old").is_file());
}

#[test]
fn zstd_and_uncompressed_layers() {
    let fx = Fixture::new();
    let registry = fx.registry();
    let layout = fx.layout_path("zstd");
    oci::init_layout(&layout);
    let mut first = LayerBuilder::new();
    first.file("zstd.txt", 0o644, b"zstd layer\n");
    let first = first.into_tar();
    let mut second = LayerBuilder::new();
    second.file("plain.txt", 0o644, b"plain layer\n");
    let second = second.into_tar();
    let compressed = zstd::encode_all(first.as_slice(), 3).expect("zstd");
    let layers = [
        oci::write_blob(
            &layout,
            "application/vnd.oci.image.layer.v1.tar+zstd",
            &compressed,
        ),
        oci::write_blob(&layout, oci::OCI_LAYER_TAR, &second),
    ];
    let diff_ids = [oci::sha256_digest(&first), oci::sha256_digest(&second)];
    let config = oci::image_config(&json!({ "Cmd": ["sh"] }), &diff_ids);
    let config = oci::write_blob(&layout, oci::OCI_CONFIG, &config);
    let manifest = oci::write_manifest(&layout, oci::OCI_MANIFEST, &config, &layers);
    oci::write_index(&layout, vec![manifest.tagged("latest")]);
    registry.push(&layout, "latest", "mixed", "latest", &[]);

    let (image, _) = fx.pull(
        &fx.puller(&[&registry]),
        &format!("{}/mixed", registry.addr),
    );
    let image = image.expect("pull");
    assert_eq!(image.reference, format!("{}/mixed:latest", registry.addr));
    let layers = fx.store.layer_paths(&image).expect("layers");
    assert_eq!(
        fs::read(layers[0].join("zstd.txt")).expect("zstd file"),
        b"zstd layer\n"
    );
    assert_eq!(
        fs::read(layers[1].join("plain.txt")).expect("plain file"),
        b"plain layer\n"
    );
}

#[test]
fn an_index_yields_its_linux_amd64_image() {
    let fx = Fixture::new();
    let registry = fx.registry();
    let layout = fx.layout_path("multi");
    let platform_image = |cmd: &str| {
        let mut layer = LayerBuilder::new();
        layer.file("platform", 0o644, cmd.as_bytes());
        oci::write_image(
            &layout,
            &ImageSpec {
                config: json!({ "Cmd": [cmd] }),
                layers: vec![layer.into_tar()],
                gzip: true,
                docker: false,
            },
        )
    };
    let arm = platform_image("arm64");
    let amd = platform_image("amd64");
    let index = oci::write_nested_index(
        &layout,
        vec![
            arm.for_platform("linux", "arm64"),
            amd.for_platform("linux", "amd64"),
        ],
    );
    oci::write_index(&layout, vec![index.tagged("latest")]);
    registry.push(&layout, "latest", "multi", "latest", &[]);
    let puller = fx.puller(&[&registry]);

    let (image, _) = fx.pull(&puller, &format!("{}/multi:latest", registry.addr));
    let image = image.expect("pull");
    assert_eq!(image.config.cmd, vec!["amd64"]);
    assert_eq!(image.digest, amd.digest);

    let pinned = format!("{}/multi@{}", registry.addr, index.digest);
    let (image, _) = fx.pull(&puller, &pinned);
    assert_eq!(image.expect("pull by index digest").digest, amd.digest);
    assert_eq!(
        fx.store.get(&pinned).expect("get").config.cmd,
        vec!["amd64"]
    );
}

#[test]
fn concurrent_pulls_download_each_layer_once() {
    let fx = Fixture::new();
    let registry = fx.registry();
    let layout = fx.layout_path("big");
    // Incompressible content, so the download takes long enough for the pulls to overlap.
    let noise = noise(4 << 20);
    let mut first = LayerBuilder::new();
    first.file("noise", 0o644, &noise);
    let mut second = LayerBuilder::new();
    second.file("more-noise", 0o644, &noise[..1 << 20]);
    write_layout(
        &layout,
        json!({ "Cmd": ["sh"] }),
        vec![first.into_tar(), second.into_tar()],
    );
    registry.push(&layout, "latest", "big", "latest", &[]);
    let puller = fx.puller(&[&registry]);
    let reference = format!("{}/big:latest", registry.addr);

    let pulls = 4;
    let barrier = Barrier::new(pulls);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..pulls)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    fx.pull(&puller, &reference)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("pull thread"))
            .collect()
    });
    let mut downloads = 0;
    for (image, statuses) in results {
        image.expect("concurrent pull");
        downloads += statuses
            .values()
            .filter(|s| s.contains(&LayerStatus::Downloading))
            .count();
    }
    assert_eq!(
        downloads, 2,
        "each of the 2 layers is downloaded by exactly one pull"
    );
    assert_eq!(fx.entries("layers/sha256").len(), 2);
    assert_eq!(fx.entries("tmp"), Vec::<String>::new());
}
