use roost_store::StoreError;
pub use roost_types::Missing;

/// Every way a platform call can fail, grouped by who must act.
///
/// The variant decides the HTTP status (and the MCP tool error kind); the
/// message is shown verbatim to humans and robots, so it always says what
/// was wrong. It names no CLI command or MCP tool: each front end adds its
/// own advice, and [`MachineError::Missing`] carries what it needs for that.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The request itself is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// The named app, machine or image does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Something the request names is not there, in a form a front end can
    /// turn into "create it with ...": 404 when it is the path's resource,
    /// 400 when the body refers to it.
    #[error("{0}")]
    Missing(Missing),
    /// The caller lacks the right the call needs (403); see
    /// [`roost_lifecycle::Caller::may`].
    #[error("{0}")]
    Forbidden(roost_lifecycle::Forbidden),
    /// The request is valid but the machine's current state or lease forbids it (409).
    #[error("{0}")]
    Conflict(String),
    /// Someone else holds the machine's lease and no (or a wrong) nonce was sent (409).
    #[error("{0}")]
    LeaseMismatch(String),
    /// A wait ran out of time (408).
    #[error("{0}")]
    Timeout(String),
    /// roost or the host failed; the request may be retried (500).
    #[error("{0}")]
    Internal(String),
    /// The host would not let roost set up the machines' private network
    /// (at [`crate::Machines::open`]; 500 if it ever reached a request).
    /// Its own variant so that a front end can offer, in its own words,
    /// to run without one.
    #[error(
        "cannot set up the machines' private network ({0}): roost needs root \
         (CAP_NET_ADMIN, CAP_SYS_ADMIN) for it, or must run without a private network"
    )]
    PrivateNetwork(String),
    /// Another daemon owns the network namespace dir this one was given (at
    /// [`crate::Machines::open`]). Its own variant so that a front end can
    /// say, in its own words, how to give this daemon a dir of its own.
    #[error("{0}")]
    NetnsDirTaken(String),
    /// A service roost depends on (an image registry) was unreachable or
    /// answered wrongly (502).
    #[error("{0}")]
    Upstream(String),
}

pub type Result<T, E = MachineError> = std::result::Result<T, E>;

impl From<StoreError> for MachineError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::AlreadyExists { .. } => MachineError::Conflict(err.to_string()),
            StoreError::NotFound { .. } => MachineError::NotFound(err.to_string()),
            other => MachineError::Internal(other.to_string()),
        }
    }
}

impl From<roost_image::ImageError> for MachineError {
    fn from(err: roost_image::ImageError) -> Self {
        use roost_image::ImageError as E;
        match err {
            E::NotFound { .. } | E::NotInRegistry { .. } => MachineError::NotFound(err.to_string()),
            E::Registry { .. } => MachineError::Upstream(err.to_string()),
            E::Io { .. } => MachineError::Internal(err.to_string()),
            // Everything else is about the image or reference the user gave.
            _ => MachineError::Invalid(err.to_string()),
        }
    }
}

impl From<roost_host::HostError> for MachineError {
    fn from(err: roost_host::HostError) -> Self {
        use roost_host::{Blame, HostError};
        match err {
            HostError::NetworkRefused(err) => return MachineError::PrivateNetwork(err.to_string()),
            HostError::NetnsDirTaken(err) => return MachineError::NetnsDirTaken(err.to_string()),
            _ => {}
        }
        let blame = err.blame();
        let text = err.to_string();
        match blame {
            Blame::Request => MachineError::Invalid(text),
            Blame::Missing => MachineError::NotFound(text),
            Blame::Timeout => MachineError::Timeout(text),
            Blame::Host => MachineError::Internal(text),
        }
    }
}

impl From<std::io::Error> for MachineError {
    fn from(err: std::io::Error) -> Self {
        MachineError::Internal(format!("host I/O error: {err}"))
    }
}
