use std::path::Path;

/// Every way a volume operation on the host can fail.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A host file or device operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A host tool (mkfs.ext4, resize2fs, e2fsck, losetup) exited with an error.
    #[error("{program} failed ({status}): {stderr}")]
    Tool {
        program: &'static str,
        status: String,
        stderr: String,
    },
    /// A host tool is not installed.
    #[error("{program} is not installed on this host (Debian package: {package})")]
    MissingTool {
        program: &'static str,
        package: &'static str,
    },
    /// The snapshot store has no snapshot of that id.
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    /// The caller asked for something the volume cannot do (shrink, a
    /// second holder, a size that is not a whole number of blocks).
    #[error("{0}")]
    Invalid(String),
    /// Stored snapshot data does not match its digest.
    #[error("snapshot data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

impl VolumeError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> VolumeError {
        VolumeError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn at(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
        let context = format!("cannot {what} {}", path.display());
        move |source| VolumeError::Io { context, source }
    }
}
