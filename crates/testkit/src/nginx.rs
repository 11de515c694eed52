//! Debian's nginx as the peer of roost's proxy benchmarks: run from a
//! temp dir with its own pid file and logs, on a free loopback port, and
//! stopped when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running nginx; SIGTERM on drop.
pub struct Nginx {
    child: Child,
    /// Where its server listens.
    pub addr: SocketAddr,
}

impl Nginx {
    /// Starts `/usr/sbin/nginx` with `workers` worker processes. `http`
    /// goes into its `http {}` block (the `upstream` blocks) and
    /// `location` is the body of `location /` of one server. Client
    /// keep-alive is unlimited so that benchmark clients never reconnect
    /// mid-run (nginx closes after 1000 requests by default); give
    /// upstream blocks `keepalive_requests` for the same reason. `prepare`
    /// adjusts the command before it runs (for example its CPU affinity).
    pub fn start(
        dir: &Path,
        workers: usize,
        http: &str,
        location: &str,
        prepare: impl FnOnce(&mut Command),
    ) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let d = dir.display();
        let config = format!(
            "worker_processes {workers};\n\
             daemon off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               keepalive_requests 1000000000;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               {http}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{\n\
                   {location}\n\
                 }}\n\
               }}\n\
             }}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).expect("write nginx.conf");
        let mut command = Command::new("/usr/sbin/nginx");
        command
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        prepare(&mut command);
        let nginx = Nginx {
            child: command
                .spawn()
                .expect("run /usr/sbin/nginx (Debian package nginx-light)"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let log = dir.join("error.log");
        crate::wait_listening(nginx.addr, &format!("nginx (see {})", log.display()));
        nginx
    }
}

impl Nginx {
    /// The master's process id (its workers are its children), for a
    /// benchmark that counts nginx's CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: the master then takes its workers down with
    /// it (killed outright, it leaves them running).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
