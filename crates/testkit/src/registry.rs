//! A real OCI registry for tests: Debian's `docker-registry` (distribution 2.x) on a free
//! loopback port with its storage in a temporary directory, optionally behind htpasswd basic
//! auth or serving HTTPS with a certificate of a test CA ([`TestCa`]). Images get into it with
//! `skopeo copy`, as a user would push them.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::run;

const BINARY: &str = "/usr/bin/docker-registry";

/// A running registry, killed (and its storage removed) on drop, panics included.
pub struct Registry {
    /// `127.0.0.1:PORT`, the registry part of references to its images.
    pub addr: String,
    credentials: Option<(String, String)>,
    dir: PathBuf,
    child: Child,
}

impl Registry {
    /// An anonymous registry: anyone may push and pull.
    pub fn start(dir: &Path) -> Registry {
        Registry::spawn(dir, None, None)
    }

    /// An anonymous registry serving HTTPS only, with the server certificate of `ca`: clients
    /// trust it only if they trust `ca`'s certificate.
    pub fn start_tls(dir: &Path, ca: &TestCa) -> Registry {
        Registry::spawn(dir, None, Some(ca))
    }

    /// A registry that requires `username`/`password` (HTTP basic, htpasswd with bcrypt) for
    /// every request.
    pub fn start_with_auth(dir: &Path, username: &str, password: &str) -> Registry {
        Registry::spawn(dir, Some((username.to_owned(), password.to_owned())), None)
    }

    fn spawn(dir: &Path, credentials: Option<(String, String)>, tls: Option<&TestCa>) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free loopback port");
        let dir = dir.join(format!("registry-{port}"));
        std::fs::create_dir_all(dir.join("storage")).expect("registry dir");
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n",
            dir.join("storage").display()
        );
        // Under `http:`, so before the top-level sections that follow.
        if let Some(ca) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                ca.server_cert.display(),
                ca.server_key.display()
            ));
        }
        if let Some((username, password)) = &credentials {
            let htpasswd = run(Command::new("htpasswd").args(["-Bbn", username, password]));
            let path = dir.join("htpasswd");
            std::fs::write(&path, htpasswd).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: roost-test\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("registry log");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BINARY} (Debian package docker-registry): {e}"));
        let registry = Registry {
            addr,
            credentials,
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&registry.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {} within 15s: {}",
                registry.addr,
                std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    /// Pushes the image tagged `tag` in the OCI layout `layout` as `repo:dest_tag` with
    /// `skopeo copy --all` (so indexes keep every platform). `extra` are more skopeo flags,
    /// e.g. `--format v2s2` for Docker schema 2.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str, dest_tag: &str, extra: &[&str]) {
        let mut command = Command::new("skopeo");
        command.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
        if let Some((username, password)) = &self.credentials {
            command.arg(format!("--dest-creds={username}:{password}"));
        }
        command
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{dest_tag}", self.addr));
        run(&mut command);
    }

    /// Where the registry keeps the content of blob `digest` (`sha256:<hex>`), for tests that
    /// corrupt what it serves.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// A certificate authority made for one test, and a server certificate it signed for
/// `127.0.0.1` (an IP subject alternative name, which is what TLS clients check for an IP
/// address), all PEM files made with the `openssl` CLI. EC P-256 keys: quick to generate, and
/// both Go's TLS and rustls speak them.
pub struct TestCa {
    /// The CA certificate: what a client must trust to accept the server certificate.
    pub cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    /// Creates the CA and the server certificate as files in `dir`, which must exist.
    pub fn create(dir: &Path) -> TestCa {
        let path = |name: &str| dir.join(name);
        let ca = TestCa {
            cert: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
        };
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new("openssl")
            .args(["req", "-x509", "-days", "2"])
            .args(new_key)
            .args(["-subj", "/CN=roost test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(path("ca.key"))
            .arg("-out")
            .arg(&ca.cert));
        run(Command::new("openssl")
            .arg("req")
            .args(new_key)
            .args(["-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(&ca.server_key)
            .arg("-out")
            .arg(path("server.csr")));
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-set_serial", "2"])
            .arg("-in")
            .arg(path("server.csr"))
            .arg("-CA")
            .arg(&ca.cert)
            .arg("-CAkey")
            .arg(path("ca.key"))
            .arg("-extfile")
            .arg(path("server.ext"))
            .arg("-out")
            .arg(&ca.server_cert));
        ca
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
