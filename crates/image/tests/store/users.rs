//! Resolving config `User` values against the image's passwd and group files.

use roost_image::{Image, ImageError};
use roost_testkit::busybox_layout;
use roost_testkit::layer::LayerBuilder;
use roost_testkit::oci::{self, ImageSpec};

use crate::common::{runtime_config, Fixture};

/// busybox with `upper` layers on top.
fn busybox_with(fx: &Fixture, upper: Vec<Vec<u8>>) -> Image {
    let base = busybox_layout(&fx.path("base"));
    let image = fx.store.import(&base, "busybox").unwrap();
    if upper.is_empty() {
        return image;
    }
    // Rebuild the layout with extra layers: the busybox layer tar is the base image's blob.
    let base_layer = fx
        .store
        .root()
        .join("blobs/sha256")
        .join(image.layers[0].trim_start_matches("sha256:"));
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(base_layer).unwrap()),
        &mut decoded,
    )
    .unwrap();
    let mut layers = vec![decoded];
    layers.extend(upper);
    let layout = fx.dir.path().join("stacked");
    let spec = ImageSpec {
        config: runtime_config(),
        layers,
        gzip: true,
        docker: false,
    };
    let manifest = oci::write_image(&layout, &spec);
    oci::write_index(&layout, vec![manifest.to_json()]);
    fx.store.import(&layout, "stacked").unwrap()
}

#[test]
fn users_resolve_against_the_image() {
    let fx = Fixture::new();
    let image = busybox_with(&fx, vec![]);
    for (user, expected) in [
        ("", (0, 0)),
        ("root", (0, 0)),
        ("app", (1000, 1000)),
        ("1000", (1000, 1000)),
        ("nobody", (65534, 65534)),
        ("app:root", (1000, 0)),
        ("app:55", (1000, 55)),
        ("4242", (4242, 0)),
        ("4242:app", (4242, 1000)),
        ("7:8", (7, 8)),
    ] {
        assert_eq!(
            fx.store.resolve_user(&image, user).unwrap(),
            expected,
            "{user}"
        );
    }
    for (user, reason) in [
        ("ghost", "no user named 'ghost'"),
        ("app:ghosts", "no group named 'ghosts'"),
    ] {
        let err = fx.store.resolve_user(&image, user).unwrap_err();
        assert!(matches!(err, ImageError::User { .. }), "{err}");
        assert!(err.to_string().contains(reason), "{err}");
    }
}

#[test]
fn the_topmost_passwd_wins() {
    let fx = Fixture::new();
    let mut upper = LayerBuilder::new();
    upper.file("etc/passwd", 0o644, b"app:x:2000:2001::/:/bin/sh\n");
    let image = busybox_with(&fx, vec![upper.into_tar()]);
    assert_eq!(fx.store.resolve_user(&image, "app").unwrap(), (2000, 2001));
    assert_eq!(
        fx.store.resolve_user(&image, "app:app").unwrap(),
        (2000, 1000)
    );
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_passwd() {
    let fx = Fixture::new();
    let mut whiteout = LayerBuilder::new();
    whiteout.file("etc/.wh.passwd", 0o644, b"");
    let mut opaque = LayerBuilder::new();
    opaque
        .file("etc/.wh..wh..opq", 0o644, b"")
        .file("etc/hostname", 0o644, b"x");
    for (name, layer) in [("whiteout", whiteout), ("opaque", opaque)] {
        let image = busybox_with(&fx, vec![layer.into_tar()]);
        let err = fx.store.resolve_user(&image, "app").unwrap_err();
        assert!(err.to_string().contains("no /etc/passwd"), "{name}: {err}");
        assert_eq!(
            fx.store.resolve_user(&image, "1000").unwrap(),
            (1000, 0),
            "{name}"
        );
    }
}

#[test]
fn a_symlinked_passwd_is_not_followed() {
    let fx = Fixture::new();
    let mut upper = LayerBuilder::new();
    upper.symlink("etc/passwd", "/etc/shadow");
    let image = busybox_with(&fx, vec![upper.into_tar()]);
    let err = fx.store.resolve_user(&image, "root").unwrap_err();
    assert!(err.to_string().contains("is a symlink"), "{err}");
    assert_eq!(fx.store.resolve_user(&image, "0:0").unwrap(), (0, 0));
}
