//! Shared helpers for the image-store integration tests: a store in a temporary directory and
//! one-call layouts built with roost-testkit.

use std::fs;
use std::path::{Path, PathBuf};

use roost_image::{Image, ImageError, ImageStore};
use roost_testkit::oci::{self, ImageSpec};
use serde_json::{json, Value};
use tempfile::TempDir;

pub struct Fixture {
    pub dir: TempDir,
    pub store: ImageStore,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path().join("store")).expect("open store");
        Fixture { dir, store }
    }

    /// A fresh directory inside the fixture.
    pub fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir_all(&path).expect("create dir");
        path
    }

    /// Writes a layout holding one image of `layers` (uncompressed tars, gzip-compressed in
    /// the layout), tagged `latest`.
    pub fn layout(&self, name: &str, layers: Vec<Vec<u8>>) -> PathBuf {
        let layout = self.dir.path().join(name);
        let spec = ImageSpec {
            config: json!({ "Cmd": ["sh"] }),
            layers,
            gzip: true,
            docker: false,
        };
        let manifest = oci::write_image(&layout, &spec);
        oci::write_index(&layout, vec![manifest.tagged("latest")]);
        layout
    }

    /// Writes a layout whose one layer is `blob` as given, with `diff_id` in the config: for
    /// layers whose media type, compression or diff_id do not agree.
    pub fn layout_with_blob(&self, media_type: &str, blob: &[u8], diff_id: &str) -> PathBuf {
        let layout = self.dir.path().join("manual");
        oci::init_layout(&layout);
        let layer = oci::write_blob(&layout, media_type, blob);
        let config = oci::image_config(&runtime_config(), &[diff_id.to_owned()]);
        let config = oci::write_blob(&layout, oci::OCI_CONFIG, &config);
        let manifest = oci::write_manifest(&layout, oci::OCI_MANIFEST, &config, &[layer]);
        oci::write_index(&layout, vec![manifest.to_json()]);
        layout
    }

    pub fn import_layers(&self, layers: Vec<Vec<u8>>) -> Result<Image, ImageError> {
        let layout = self.layout("layout", layers);
        self.store.import(&layout, "test")
    }

    /// Names of the entries of a store subdirectory (`blobs/sha256`, `layers/sha256`, ...).
    pub fn entries(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.store.root().join(sub))
            .expect("read store dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Asserts that a failed import left no layer, record or temporary file behind.
    pub fn assert_nothing_left(&self) {
        assert_eq!(self.entries("layers/sha256"), Vec::<String>::new());
        assert_eq!(self.entries("images"), Vec::<String>::new());
        assert_eq!(self.entries("tmp"), Vec::<String>::new());
    }

    pub fn layer_dir(&self, image: &Image, index: usize) -> PathBuf {
        self.store.layer_paths(image).expect("layer paths")[index].clone()
    }
}

pub fn runtime_config() -> Value {
    json!({ "Cmd": ["sh"] })
}

pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}
