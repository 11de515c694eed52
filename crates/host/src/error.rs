//! The one error type of the host agent.

/// Every way work on the host can fail. [`HostError::blame`] tells the
/// caller's mistakes (an invalid value, a missing snapshot, a program
/// that does not exist in the machine) from the host's.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The OCI runtime, the bundle, the overlay or a machine's processes.
    #[error(transparent)]
    Runtime(#[from] roost_runtime::RuntimeError),
    /// A volume's image, loop device, mount or snapshots.
    #[error(transparent)]
    Volume(#[from] roost_volume::VolumeError),
    /// A machine's root filesystem disk.
    #[error("machine root filesystem disk: {0}")]
    Disk(roost_volume::VolumeError),
    /// A value the private network's plan cannot express.
    #[error("{0}")]
    NetInput(String),
    /// The private network.
    #[error("private network: {0}")]
    Net(roost_net::NetError),
    /// The host would not let the private network be set up at open (it
    /// needs root: `CAP_NET_ADMIN`, `CAP_SYS_ADMIN`). Its own variant so the
    /// service can tell it apart: the cure is to run without one.
    #[error("the host refused the machines' private network: {0}")]
    NetworkRefused(roost_net::NetError),
    /// The network namespace dir is another daemon's (at open). Its own
    /// variant so the service can tell it apart: the cure is a dir of this
    /// daemon's own.
    #[error("{0}")]
    NetnsDirTaken(roost_net::NetError),
    /// A path inside a machine or a volume, as a guest file call saw it
    /// (not found, a directory, too many symlinks ...).
    #[error("host I/O error: {0}")]
    Guest(std::io::Error),
    /// A file of the host's own.
    #[error("host I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else that went wrong on the host.
    #[error("{0}")]
    Internal(String),
}

/// Who must act on a [`HostError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The request asked for something impossible.
    Request,
    /// The request names something that is not there.
    Missing,
    /// Something did not finish in time.
    Timeout,
    /// The host failed; the request may be retried.
    Host,
}

impl HostError {
    pub fn blame(&self) -> Blame {
        use roost_runtime::RuntimeError as R;
        use roost_volume::VolumeError as V;
        match self {
            HostError::Runtime(R::Timeout { .. }) => Blame::Timeout,
            HostError::Runtime(R::NotStarted { .. })
            | HostError::Volume(V::Invalid(_))
            | HostError::NetInput(_) => Blame::Request,
            HostError::Volume(V::SnapshotNotFound(_)) => Blame::Missing,
            _ => Blame::Host,
        }
    }
}

impl From<roost_net::NetError> for HostError {
    fn from(err: roost_net::NetError) -> Self {
        match err {
            roost_net::NetError::InvalidInput(msg) => HostError::NetInput(msg),
            roost_net::NetError::OwnedByAnother { .. } => HostError::NetnsDirTaken(err),
            other => HostError::Net(other),
        }
    }
}

pub type Result<T, E = HostError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use roost_runtime::RuntimeError;
    use roost_volume::VolumeError;

    #[test]
    fn blame_tells_the_requests_faults_from_the_hosts() {
        let cases = [
            (
                HostError::from(RuntimeError::NotStarted {
                    reason: "no such program".into(),
                }),
                Blame::Request,
            ),
            (
                HostError::from(RuntimeError::Timeout {
                    command: "crun exec".into(),
                    timeout: std::time::Duration::from_secs(1),
                }),
                Blame::Timeout,
            ),
            (
                HostError::from(VolumeError::Invalid("cannot shrink".into())),
                Blame::Request,
            ),
            (
                HostError::from(VolumeError::SnapshotNotFound("vs_1".into())),
                Blame::Missing,
            ),
            (
                HostError::from(roost_net::NetError::InvalidInput("slot 1".into())),
                Blame::Request,
            ),
            (
                HostError::from(roost_net::NetError::Kernel("no bridge".into())),
                Blame::Host,
            ),
            // A machine's disk is the host's business whatever went wrong.
            (
                HostError::Disk(VolumeError::Invalid("cannot shrink".into())),
                Blame::Host,
            ),
            (
                HostError::from(std::io::Error::other("disk full")),
                Blame::Host,
            ),
        ];
        for (err, blame) in cases {
            assert_eq!(err.blame(), blame, "{err}");
        }
    }

    #[test]
    fn network_messages_keep_the_plans_own_words() {
        let input = HostError::from(roost_net::NetError::InvalidInput("slot 1 is taken".into()));
        assert_eq!(input.to_string(), "slot 1 is taken");
        let kernel = HostError::from(roost_net::NetError::Kernel("no bridge".into()));
        assert_eq!(kernel.to_string(), "private network: no bridge");
    }

    #[test]
    fn a_netns_dir_of_another_daemon_is_told_apart() {
        let taken = HostError::from(roost_net::NetError::OwnedByAnother {
            dir: "/run/roost/netns".into(),
            owner: "site 0001, data dir /data/one".into(),
        });
        assert!(matches!(taken, HostError::NetnsDirTaken(_)), "{taken:?}");
    }
}
