//! Import formats, manifest selection and verification.

use std::fs;
use std::process::Command;

use roost_image::{ImageError, ImageStore};
use roost_testkit::busybox_layout;
use roost_testkit::layer::LayerBuilder;
use roost_testkit::oci::{self, ImageSpec};
use serde_json::json;

use crate::common::{exists, runtime_config, Fixture};

fn one_file_layer(contents: &[u8]) -> Vec<u8> {
    let mut layer = LayerBuilder::new();
    layer.file("hello", 0o644, contents);
    layer.into_tar()
}

#[test]
fn imports_the_busybox_layout() {
    let fx = Fixture::new();
    let layout = busybox_layout(&fx.path("src"));
    let image = fx.store.import(&layout, "busybox").unwrap();
    assert_eq!(image.reference, "busybox:latest");
    assert!(image.digest.starts_with("sha256:") && image.digest.len() == 71);
    assert_eq!(image.config.cmd, vec!["sh"]);
    assert_eq!(
        image.config.env,
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
    assert_eq!(image.config.working_dir.as_deref(), Some("/"));
    assert_eq!(image.layers.len(), 1);
    assert!(image.size > 0);

    let root = fx.layer_dir(&image, 0);
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        fs::metadata(&root).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        fs::read(root.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap().to_str(),
        Some("/bin/busybox")
    );
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    let home = fs::metadata(root.join("home/app")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1000, 1000));

    assert_eq!(fx.store.get("busybox").unwrap(), image);
    assert_eq!(fx.store.get(&image.digest).unwrap(), image);
    assert_eq!(
        fx.store.get(&format!("busybox@{}", image.digest)).unwrap(),
        image
    );
    assert_eq!(fx.store.list().unwrap(), vec![image]);
}

#[test]
fn reimport_reuses_the_unpacked_layer() {
    let fx = Fixture::new();
    let layout = fx.layout("src", vec![one_file_layer(b"hi")]);
    let first = fx.store.import(&layout, "app:v1").unwrap();
    let layer = fx.layer_dir(&first, 0);
    fs::write(layer.join("marker"), b"unpacked once").unwrap();

    let again = fx.store.import(&layout, "app:v1").unwrap();
    assert_eq!(again, first, "same reference and digest keeps the record");
    let other = fx.store.import(&layout, "other").unwrap();
    assert_eq!(other.digest, first.digest);
    assert_eq!(fx.layer_dir(&other, 0), layer);
    assert!(
        layer.join("marker").exists(),
        "the layer was unpacked again"
    );
    assert_eq!(fx.entries("layers/sha256").len(), 1);
    assert_eq!(fx.store.list().unwrap().len(), 2);
}

#[test]
fn shared_layers_are_stored_once() {
    let fx = Fixture::new();
    let base = one_file_layer(b"base");
    let a = fx.layout("a", vec![base.clone(), one_file_layer(b"a")]);
    let b = fx.layout("b", vec![base, one_file_layer(b"b")]);
    let a = fx.store.import(&a, "a").unwrap();
    let b = fx.store.import(&b, "b").unwrap();
    assert_eq!(a.layers[0], b.layers[0]);
    assert_ne!(a.layers[1], b.layers[1]);
    assert_eq!(fx.entries("layers/sha256").len(), 3);
}

#[test]
fn uncompressed_docker_media_type_layouts_import() {
    let fx = Fixture::new();
    for (name, gzip, docker) in [("plain", false, false), ("docker", true, true)] {
        let layout = fx.dir.path().join(name);
        let spec = ImageSpec {
            config: json!({ "Entrypoint": ["/bin/app"], "User": "1000", "ExposedPorts": { "8080/tcp": {} }, "Labels": { "k": "v" } }),
            layers: vec![one_file_layer(name.as_bytes())],
            gzip,
            docker,
        };
        let manifest = oci::write_image(&layout, &spec);
        oci::write_index(&layout, vec![manifest.to_json()]);
        let image = fx.store.import(&layout, name).unwrap();
        assert_eq!(image.digest, manifest.digest);
        assert_eq!(image.config.entrypoint, vec!["/bin/app"]);
        assert_eq!(image.config.user.as_deref(), Some("1000"));
        assert_eq!(image.config.exposed_ports, vec!["8080/tcp"]);
        assert_eq!(image.config.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(
            fs::read(fx.layer_dir(&image, 0).join("hello")).unwrap(),
            name.as_bytes()
        );
    }
}

#[test]
fn compression_is_detected_from_content_not_media_type() {
    let fx = Fixture::new();
    let tar = one_file_layer(b"gz");
    let layout = fx.layout_with_blob(
        oci::OCI_LAYER_TAR,
        &oci::gzip(&tar),
        &oci::sha256_digest(&tar),
    );
    let image = fx.store.import(&layout, "lying").unwrap();
    assert_eq!(
        fs::read(fx.layer_dir(&image, 0).join("hello")).unwrap(),
        b"gz"
    );
}

/// Two single-layer images, for index tests: returns the layout and both manifest descriptors.
fn two_images(fx: &Fixture) -> (std::path::PathBuf, oci::Descriptor, oci::Descriptor) {
    let layout = fx.dir.path().join("multi");
    let write = |contents: &[u8]| {
        let spec = ImageSpec {
            config: runtime_config(),
            layers: vec![one_file_layer(contents)],
            gzip: true,
            docker: false,
        };
        oci::write_image(&layout, &spec)
    };
    let first = write(b"first");
    let second = write(b"second");
    (layout, first, second)
}

/// Two images in a nested index for the platforms `arches` (linux), tagged `latest`.
fn platform_index(fx: &Fixture, arches: [&str; 2]) -> (std::path::PathBuf, oci::Descriptor) {
    let (layout, first, second) = two_images(fx);
    let entries = vec![
        first.for_platform("linux", arches[0]),
        second.for_platform("linux", arches[1]),
    ];
    let index = oci::write_nested_index(&layout, entries);
    oci::write_index(&layout, vec![index.tagged("latest")]);
    (layout, second)
}

#[test]
fn an_index_yields_its_linux_amd64_image() {
    let fx = Fixture::new();
    let (layout, amd) = platform_index(&fx, ["arm64", "amd64"]);
    let image = fx.store.import(&layout, "multi").unwrap();
    assert_eq!(image.digest, amd.digest);
    assert_eq!(
        fs::read(fx.layer_dir(&image, 0).join("hello")).unwrap(),
        b"second"
    );
}

#[test]
fn a_single_manifest_index_yields_its_manifest() {
    let fx = Fixture::new();
    let (layout, only, _) = two_images(&fx);
    let index = oci::write_nested_index(&layout, vec![only.to_json()]);
    oci::write_index(&layout, vec![index.to_json()]);
    assert_eq!(
        fx.store.import(&layout, "single").unwrap().digest,
        only.digest
    );
}

#[test]
fn an_index_without_linux_amd64_is_refused() {
    let fx = Fixture::new();
    let (layout, _) = platform_index(&fx, ["arm64", "s390x"]);
    let err = fx.store.import(&layout, "multi").unwrap_err();
    assert!(matches!(err, ImageError::Malformed { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("linux/amd64") && message.contains("linux/arm64"),
        "{message}"
    );
    fx.assert_nothing_left();
}

#[test]
fn a_layout_with_several_tags_yields_the_one_named() {
    let fx = Fixture::new();
    let (layout, v1, v2) = two_images(&fx);
    oci::write_index(&layout, vec![v1.tagged("v1"), v2.tagged("v2")]);
    assert_eq!(
        fx.store.import(&layout, "app:v2").unwrap().digest,
        v2.digest
    );
    assert_eq!(
        fx.store.import(&layout, "app:v1").unwrap().digest,
        v1.digest
    );
    let err = fx.store.import(&layout, "app:v3").unwrap_err();
    assert!(err.to_string().contains("tag 'v1', tag 'v2'"), "{err}");
}

fn skopeo(args: &[&str]) {
    roost_testkit::run(Command::new("skopeo").args(args));
}

#[test]
fn archives_written_by_skopeo_import() {
    let fx = Fixture::new();
    let layout = busybox_layout(&fx.path("src"));
    let from_layout = fx.store.import(&layout, "busybox").unwrap();
    let source = format!("oci:{}:latest", layout.display());
    let docker = fx.dir.path().join("busybox-docker.tar");
    let oci_archive = fx.dir.path().join("busybox-oci.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &source,
        &format!("docker-archive:{}:busybox:latest", docker.display()),
    ]);
    skopeo(&[
        "copy",
        "--quiet",
        &source,
        &format!("oci-archive:{}:latest", oci_archive.display()),
    ]);

    let from_docker = fx.store.import(&docker, "busybox:docker").unwrap();
    assert_eq!(from_docker.config, from_layout.config);
    let root = fx.layer_dir(&from_docker, 0);
    assert_eq!(
        fs::read(root.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    let again = fx.store.import(&docker, "busybox:docker-again").unwrap();
    assert_eq!(
        again.digest, from_docker.digest,
        "the synthesized docker-save manifest is stable"
    );

    let gzipped = fx.dir.path().join("busybox-docker.tar.gz");
    fs::write(&gzipped, oci::gzip(&fs::read(&docker).unwrap())).unwrap();
    assert_eq!(
        fx.store.import(&gzipped, "busybox:gz").unwrap().digest,
        from_docker.digest
    );

    let from_archive = fx.store.import(&oci_archive, "busybox:archive").unwrap();
    assert_eq!(from_archive.config, from_layout.config);
    assert!(fx.layer_dir(&from_archive, 0).join("bin/busybox").is_file());
    assert_eq!(fx.entries("tmp"), Vec::<String>::new());
}

#[test]
fn a_docker_save_with_several_images_needs_a_matching_name() {
    let fx = Fixture::new();
    let dir = fx.path("saved");
    let tar = one_file_layer(b"saved");
    fs::write(dir.join("layer.tar"), &tar).unwrap();
    fs::write(
        dir.join("config.json"),
        oci::image_config(&runtime_config(), &[oci::sha256_digest(&tar)]),
    )
    .unwrap();
    let entry =
        |tag: &str| json!({ "Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"] });
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&json!([entry("a:1"), entry("b:2")])).unwrap(),
    )
    .unwrap();
    assert_eq!(fx.store.import(&dir, "b:2").unwrap().reference, "b:2");
    let err = fx.store.import(&dir, "c").unwrap_err();
    assert!(err.to_string().contains("a:1, b:2"), "{err}");
}

#[test]
fn docker_save_member_paths_cannot_escape() {
    let fx = Fixture::new();
    let dir = fx.path("saved");
    fs::write(
        dir.join("manifest.json"),
        br#"[{"Config":"../config.json","Layers":[]}]"#,
    )
    .unwrap();
    let err = fx.store.import(&dir, "escape").unwrap_err();
    assert!(matches!(err, ImageError::UnsupportedFormat { .. }), "{err}");
    assert!(err.to_string().contains("'..'"), "{err}");
}

#[test]
fn a_corrupt_layer_blob_is_a_digest_mismatch_and_leaves_nothing() {
    let fx = Fixture::new();
    let layout = fx.layout("src", vec![one_file_layer(b"good")]);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_hex = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&manifest_hex)).unwrap())
            .unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let blob = layout
        .join("blobs/sha256")
        .join(layer_digest.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&blob, bytes).unwrap();

    let err = fx.store.import(&layout, "corrupt").unwrap_err();
    match &err {
        ImageError::DigestMismatch { expected, .. } => assert_eq!(expected, &layer_digest),
        other => panic!("expected DigestMismatch, got {other}"),
    }
    assert!(err.to_string().contains("re-export"), "{err}");
    assert!(!fx
        .entries("blobs/sha256")
        .contains(&layer_digest.trim_start_matches("sha256:").to_owned()));
    fx.assert_nothing_left();
}

#[test]
fn a_wrong_diff_id_is_a_digest_mismatch_and_leaves_no_layer() {
    let fx = Fixture::new();
    let wrong = oci::sha256_digest(b"something else");
    let layout = fx.layout_with_blob(oci::OCI_LAYER_TAR, &one_file_layer(b"real"), &wrong);
    let err = fx.store.import(&layout, "wrong").unwrap_err();
    match &err {
        ImageError::DigestMismatch { expected, what, .. } => {
            assert_eq!(expected, &wrong);
            assert!(what.contains("uncompressed"), "{what}");
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    fx.assert_nothing_left();
}

#[test]
fn ingest_blob_verifies_digest_and_size() {
    let fx = Fixture::new();
    let digest = oci::sha256_digest(b"hello");
    let store = &fx.store;
    let err = store
        .ingest_blob(&b"hello"[..], &digest, Some(3))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::SizeMismatch {
                expected: 3,
                actual: 4,
                ..
            }
        ),
        "{err}"
    );
    let err = store
        .ingest_blob(&b"hellO"[..], &digest, Some(5))
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    let err = store
        .ingest_blob(&b"hello"[..], "sha256:../../etc", None)
        .unwrap_err();
    assert!(matches!(err, ImageError::Malformed { .. }), "{err}");
    let err = store
        .ingest_blob(&b"hello"[..], "sha512:abcd", None)
        .unwrap_err();
    assert!(err.to_string().contains("only sha256"), "{err}");
    assert_eq!(fx.entries("blobs/sha256"), Vec::<String>::new());
    assert_eq!(fx.entries("tmp"), Vec::<String>::new());

    store.ingest_blob(&b"hello"[..], &digest, Some(5)).unwrap();
    store
        .ingest_blob(&b"not read again"[..], &digest, None)
        .unwrap();
    let hex = digest.trim_start_matches("sha256:");
    assert_eq!(
        fs::read(store.root().join("blobs/sha256").join(hex)).unwrap(),
        b"hello"
    );
}

#[test]
fn register_checks_its_inputs() {
    let fx = Fixture::new();
    let tar = one_file_layer(b"x");
    let layer_digest = oci::sha256_digest(&tar);
    let config = oci::image_config(&runtime_config(), std::slice::from_ref(&layer_digest));
    let manifest = |config_bytes: &[u8], layers: serde_json::Value| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_MANIFEST,
            "config": { "mediaType": oci::OCI_CONFIG, "digest": oci::sha256_digest(config_bytes), "size": config_bytes.len() },
            "layers": layers,
        }))
        .unwrap()
    };
    let layers =
        json!([{ "mediaType": oci::OCI_LAYER_TAR, "digest": layer_digest, "size": tar.len() }]);
    let good = manifest(&config, layers.clone());

    let err = fx.store.register("app", &good, &config).unwrap_err();
    assert!(matches!(err, ImageError::MissingBlob { .. }), "{err}");
    assert!(err.to_string().contains("ingest every layer blob"), "{err}");

    let err = fx.store.register("app", &good, b"{}").unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");

    let no_diff_ids = oci::image_config(&runtime_config(), &[]);
    let err = fx
        .store
        .register("app", &manifest(&no_diff_ids, layers), &no_diff_ids)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("0 diff_ids but the manifest has 1 layers"),
        "{err}"
    );

    let index = serde_json::to_vec(
        &json!({ "schemaVersion": 2, "mediaType": oci::OCI_INDEX, "manifests": [] }),
    )
    .unwrap();
    let err = fx.store.register("app", &index, &config).unwrap_err();
    assert!(err.to_string().contains("platform manifest"), "{err}");

    let err = fx
        .store
        .register("app", b"{\"schemaVersion\": 1}", &config)
        .unwrap_err();
    assert!(err.to_string().contains("schema 1"), "{err}");

    let err = fx.store.register("app", b"not json", &config).unwrap_err();
    assert!(matches!(err, ImageError::Malformed { .. }), "{err}");
    fx.assert_nothing_left();

    fx.store
        .ingest_blob(tar.as_slice(), &layer_digest, None)
        .unwrap();
    let image = fx.store.register("app", &good, &config).unwrap();
    assert_eq!(image.digest, oci::sha256_digest(&good));
    assert!(fx.layer_dir(&image, 0).join("hello").is_file());
}

#[test]
fn unsupported_sources_say_what_was_expected() {
    let fx = Fixture::new();
    let missing = fx.dir.path().join("missing");
    let garbage = fx.dir.path().join("garbage.bin");
    fs::write(&garbage, vec![0x55u8; 4096]).unwrap();
    let empty = fx.path("empty");
    for source in [&missing, &garbage, &empty] {
        let err = fx.store.import(source, "x").unwrap_err();
        assert!(
            matches!(err, ImageError::UnsupportedFormat { .. }),
            "{source:?}: {err}"
        );
        assert!(
            err.to_string().contains(&source.display().to_string()),
            "{err}"
        );
    }
    let err = fx.store.import(&empty, "x").unwrap_err();
    assert!(err.to_string().contains("docker-save"), "{err}");
    fx.assert_nothing_left();
}

#[test]
fn a_layout_missing_a_blob_names_it() {
    let fx = Fixture::new();
    let layout = fx.layout("src", vec![one_file_layer(b"x")]);
    let blobs: Vec<_> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let layer = blobs
        .iter()
        .find(|p| fs::read(p).unwrap().starts_with(&[0x1f, 0x8b]))
        .unwrap();
    fs::remove_file(layer).unwrap();
    let err = fx.store.import(&layout, "x").unwrap_err();
    assert!(
        err.to_string().contains("has no member 'blobs/sha256/"),
        "{err}"
    );
}

#[test]
fn malformed_layouts_are_rejected() {
    let fx = Fixture::new();
    let layout = fx.layout("src", vec![one_file_layer(b"x")]);
    fs::write(layout.join("index.json"), b"{ not json").unwrap();
    let err = fx.store.import(&layout, "x").unwrap_err();
    assert!(matches!(err, ImageError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("index.json"), "{err}");

    let bad_digest = json!({ "schemaVersion": 2, "manifests": [{ "mediaType": oci::OCI_MANIFEST, "digest": "sha256:../../../etc/passwd", "size": 10 }] });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&bad_digest).unwrap(),
    )
    .unwrap();
    let err = fx.store.import(&layout, "x").unwrap_err();
    assert!(err.to_string().contains("64 lowercase hex"), "{err}");
    fx.assert_nothing_left();
}

#[test]
fn zstd_layers_are_unpacked_and_xz_refused_by_name() {
    let fx = Fixture::new();
    let mut layer = roost_testkit::layer::LayerBuilder::new();
    layer.file("hello", 0o644, b"zstd\n");
    let tar = layer.into_tar();
    let zstd = zstd::encode_all(tar.as_slice(), 3).unwrap();
    let media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
    let layout = fx.layout_with_blob(media_type, &zstd, &oci::sha256_digest(&tar));
    let image = fx.store.import(&layout, "zstd").unwrap();
    assert_eq!(
        fs::read(fx.layer_dir(&image, 0).join("hello")).unwrap(),
        b"zstd\n"
    );

    let fx = Fixture::new();
    let blob = [&[0xfdu8, b'7', b'z', b'X', b'Z'][..], b"xz stream"].concat();
    let media_type = "application/vnd.oci.image.layer.v1.tar+xz";
    let layout = fx.layout_with_blob(media_type, &blob, &oci::sha256_digest(b""));
    let err = fx.store.import(&layout, "xz").unwrap_err();
    assert!(err.to_string().contains("xz-compressed"), "{err}");
    fx.assert_nothing_left();
}

#[test]
fn open_clears_interrupted_work() {
    let fx = Fixture::new();
    let tmp = fx.store.root().join("tmp");
    fs::create_dir_all(tmp.join("layer-partial/etc")).unwrap();
    fs::write(tmp.join("blob-partial"), b"half").unwrap();
    let reopened = ImageStore::open(fx.store.root()).unwrap();
    assert!(!exists(&tmp.join("layer-partial")) && !exists(&tmp.join("blob-partial")));
    assert_eq!(reopened.root(), fx.store.root());
}

#[test]
fn the_store_is_shareable_across_threads() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<ImageStore>();
}
