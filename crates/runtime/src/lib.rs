//! roost-runtime runs machines with a real OCI runtime (crun or runc).
//!
//! It owns everything between "a prepared root filesystem" and "a running
//! process tree": the overlay root filesystem ([`rootfs`]), the hardened
//! OCI `config.json` ([`write_bundle`]), the runtime driver ([`Runtime`]),
//! exec, process inspection for `ps`, exit tracking ([`wait_for_exit`]),
//! killing every process of a machine ([`cgroup`]) and the log relay that
//! keeps logs bounded ([`logs`]). It keeps no state of its own: the
//! runtime's state directory and the kernel are the source of truth, so a
//! restarted daemon picks up exactly where the old one stopped.
//!
//! Every machine runs tini (`/.roost/init`, bind-mounted from the host's
//! `tini-static`) as pid 1, so zombies are reaped and signals forwarded
//! whatever the image's entrypoint does.

mod bundle;
pub mod cgroup;
mod console;
mod error;
mod exec;
mod host;
pub mod logs;
mod process;
pub mod rootfs;
mod runtime;
mod seccomp;

pub use bundle::{
    bundle_env, set_bundle_env, write_bundle, write_plain_bundle, BindMount, BundleConfig,
    INIT_PATH,
};
pub use error::RuntimeError;
pub use exec::{ExecOutput, ExecRequest};
pub use host::{cgroup_mode, CgroupMode};
pub use logs::LogRelay;
pub use process::{processes, reap_orphans, set_child_subreaper, wait_for_exit, ProcessInfo};
pub use runtime::{ContainerState, ContainerStatus, OciRuntimeKind, Runtime};
