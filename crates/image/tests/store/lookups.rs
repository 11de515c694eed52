//! Finding images: references, digests and their errors.

use roost_image::ImageError;
use roost_testkit::layer::LayerBuilder;

use crate::common::Fixture;

fn imported(fx: &Fixture) -> roost_image::Image {
    let mut layer = LayerBuilder::new();
    layer.file("x", 0o644, b"x");
    let layout = fx.layout("src", vec![layer.into_tar()]);
    fx.store
        .import(&layout, "localhost:5000/team/app:v1")
        .unwrap()
}

#[test]
fn references_with_a_registry_port_round_trip() {
    let fx = Fixture::new();
    let image = imported(&fx);
    assert_eq!(image.reference, "localhost:5000/team/app:v1");
    assert_eq!(fx.store.get("localhost:5000/team/app:v1").unwrap(), image);
    assert_eq!(
        fx.store
            .get(&format!("localhost:5000/team/app@{}", image.digest))
            .unwrap(),
        image
    );
    assert_eq!(
        fx.entries("images"),
        vec!["localhost%3A5000%2Fteam%2Fapp%3Av1.json"]
    );
}

#[test]
fn missing_images_are_not_found() {
    let fx = Fixture::new();
    let image = imported(&fx);
    let other_digest = format!("sha256:{}", "0".repeat(64));
    for reference in [
        "localhost:5000/team/app".to_owned(),
        "app:v1".to_owned(),
        other_digest.clone(),
        format!("other@{}", image.digest),
        format!("localhost:5000/team/app@{other_digest}"),
    ] {
        let err = fx.store.get(&reference).unwrap_err();
        assert!(
            matches!(err, ImageError::NotFound { .. }),
            "{reference}: {err}"
        );
        assert!(err.to_string().contains("import the image first"), "{err}");
    }
}

#[test]
fn invalid_references_are_rejected_before_anything_is_read() {
    let fx = Fixture::new();
    for reference in ["UPPER", "app:", "sha256:1234", "a b"] {
        let err = fx.store.get(reference).unwrap_err();
        assert!(
            matches!(err, ImageError::InvalidReference { .. }),
            "{reference}: {err}"
        );
    }
    let err = fx
        .store
        .import(std::path::Path::new("/nonexistent"), "Bad:Name:x")
        .unwrap_err();
    assert!(matches!(err, ImageError::InvalidReference { .. }), "{err}");
    fx.assert_nothing_left();
}

#[test]
fn list_skips_damaged_records() {
    let fx = Fixture::new();
    let image = imported(&fx);
    std::fs::write(fx.store.root().join("images/broken%3Alatest.json"), b"{").unwrap();
    assert_eq!(fx.store.list().unwrap(), vec![image]);
    let err = fx.store.get("broken").unwrap_err();
    assert!(matches!(err, ImageError::Malformed { .. }), "{err}");
}

#[test]
fn layer_paths_report_a_missing_layer() {
    let fx = Fixture::new();
    let image = imported(&fx);
    std::fs::remove_dir_all(fx.layer_dir(&image, 0)).unwrap();
    let err = fx.store.layer_paths(&image).unwrap_err();
    assert!(matches!(err, ImageError::MissingBlob { .. }), "{err}");
    assert!(err.to_string().contains("import the image again"), "{err}");
}
