use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the image store.
///
/// Messages are shown verbatim to people and to agents driving the API, so each one says what
/// was wrong and what to check. Variants map to API statuses: [`ImageError::NotFound`] is a
/// 404; `InvalidReference`, `UnsupportedFormat`, `Malformed`, `DigestMismatch`, `SizeMismatch`,
/// `MissingBlob`, `UnsafeLayerEntry`, `User` and `RegistryAuth` are problems with the caller's
/// input (400); [`ImageError::NotInRegistry`] is a 404; [`ImageError::Registry`] is a registry
/// that could not be reached or answered wrongly (502); `Io` is the host's fault (500).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("image '{reference}' is not in the image store; check the name against the list of images, or import the image first")]
    NotFound { reference: String },

    #[error("invalid image reference '{reference}': {reason}; use 'repo[:tag]', 'repo@sha256:<64 hex digits>' or 'sha256:<64 hex digits>' (repo: lowercase letters, digits and . _ - separators, optionally under 'host[:port]/')")]
    InvalidReference { reference: String, reason: String },

    #[error("cannot import {}: {reason}", path.display())]
    UnsupportedFormat { path: PathBuf, reason: String },

    #[error("invalid {what}: {reason}")]
    Malformed { what: String, reason: String },

    #[error("{what} has digest {actual} but {expected} was expected; the content is corrupt or was modified after it was referenced, so re-export or re-pull the image")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error("blob {digest} is {actual} bytes but its descriptor says {expected}; the content is truncated or corrupt, so re-export or re-pull the image")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },

    #[error("blob {digest} is missing: {reason}")]
    MissingBlob { digest: String, reason: String },

    #[error("layer {layer} has an unsafe entry '{path}': {reason}; the layer was rejected and nothing from it was kept")]
    UnsafeLayerEntry {
        layer: String,
        path: String,
        reason: String,
    },

    #[error("cannot resolve user '{user}' in image {image}: {reason}")]
    User {
        image: String,
        user: String,
        reason: String,
    },

    #[error("registry {registry} has no image '{reference}' ({reason}); check the repository name and tag, e.g. with `skopeo list-tags docker://{registry}/REPO`")]
    NotInRegistry {
        registry: String,
        reference: String,
        reason: String,
    },

    #[error("registry {registry} refused access to '{repository}': {reason}; check the username and password for {registry} (the pull request's `auth`, or the host's registries.json)")]
    RegistryAuth {
        registry: String,
        repository: String,
        reason: String,
    },

    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    pub(crate) fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        ImageError::Io {
            context: context.into(),
            source: source.into(),
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, reason: impl ToString) -> Self {
        ImageError::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
