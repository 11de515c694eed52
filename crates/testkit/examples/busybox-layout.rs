//! Writes the busybox test image as an OCI layout, for trying roost by hand:
//! `cargo run -p roost-testkit --example busybox-layout -- DIR`, then
//! `roost image import DIR/busybox-oci --name busybox:latest`.

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: busybox-layout DIR");
        std::process::exit(2);
    };
    if let Err(err) = roost_testkit::host_busybox() {
        eprintln!("cannot build the busybox image: {err}");
        std::process::exit(1);
    }
    let dir = std::path::PathBuf::from(dir);
    if let Err(err) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {err}", dir.display());
        std::process::exit(1);
    }
    println!("{}", roost_testkit::busybox_layout(&dir).display());
}
