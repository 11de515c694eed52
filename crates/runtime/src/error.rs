//! The one error type of this crate.
//!
//! Every variant carries enough context (the command line, the path, the
//! allowed values) for the caller, human or robot, to act on the message
//! without reading this crate's source.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Errors returned by the runtime driver and its helpers.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A host binary roost relies on could not be found.
    #[error("`{program}` is not installed (looked in {searched}); install the Debian package `{package}`")]
    NotInstalled {
        /// Binary name, e.g. `crun`.
        program: String,
        /// Debian package that provides it.
        package: &'static str,
        /// Where we looked, for the message.
        searched: String,
    },
    /// The OCI runtime ran and reported a failure.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line that failed.
        command: String,
        /// How it ended, e.g. `exit status: 1`.
        status: String,
        /// What the runtime said about it.
        stderr: String,
    },
    /// An exec'd command could not be started in its running container: no
    /// such program, not executable, and the like. The request's fault, not
    /// the host's; the runtime's own command line (host paths) is left out.
    #[error("the command could not be started in the machine: {reason}")]
    NotStarted {
        /// What the runtime said about it.
        reason: String,
    },
    /// A command did not finish in time and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The command line that timed out.
        command: String,
        /// The limit that was exceeded.
        timeout: Duration,
    },
    /// The OCI runtime does not know a container with this id.
    #[error("container `{id}` does not exist under {}", root.display())]
    NotFound {
        /// The container id that was asked for.
        id: String,
        /// The runtime state directory that was searched.
        root: PathBuf,
    },
    /// The caller passed a value roost refuses to hand to the runtime.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which input was rejected.
        what: &'static str,
        /// Why, and what would be accepted.
        reason: String,
    },
    /// The runtime printed something this crate could not understand.
    #[error("unexpected output from `{command}`: {reason}")]
    BadOutput {
        /// The command whose output was unexpected.
        command: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Processes of a machine survived being killed through its cgroup.
    #[error("{left} processes of cgroup {cgroup} still run {waited:?} after they were killed")]
    Unkillable {
        /// The cgroup, relative to the cgroup root.
        cgroup: String,
        /// How many processes were left.
        left: usize,
        /// How long they were given.
        waited: Duration,
    },
    /// A filesystem or system-call operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, including the path involved.
        context: String,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
}

impl RuntimeError {
    /// Wraps an I/O error with a description of what was being attempted.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`InvalidInput`](RuntimeError::InvalidInput) error.
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        RuntimeError::InvalidInput {
            what,
            reason: reason.into(),
        }
    }
}
