use s3s::{s3_error, S3Error};

/// Errors of the object store outside the S3 protocol (opening the store,
/// bucket administration). S3 requests answer S3 XML errors instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("object index error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored object metadata is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("bucket name '{0}' is invalid: use 3 to 63 characters a-z, 0-9, '-' and '.', starting and ending with a letter or digit")]
    InvalidBucketName(String),
    #[error("bucket '{0}' already exists")]
    BucketExists(String),
    #[error("bucket '{0}' not found")]
    NoSuchBucket(String),
    #[error("bucket '{0}' is not empty")]
    BucketNotEmpty(String),
    #[error("{0}")]
    Internal(String),
    /// An S3 protocol error raised inside a store operation.
    #[error("{0}")]
    S3(Box<S3Error>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<S3Error> for Error {
    fn from(err: S3Error) -> Error {
        Error::S3(Box::new(err))
    }
}

impl From<Error> for S3Error {
    fn from(err: Error) -> S3Error {
        match err {
            Error::S3(err) => *err,
            Error::InvalidBucketName(_) => s3_error!(InvalidBucketName),
            Error::BucketExists(_) => s3_error!(BucketAlreadyExists),
            Error::NoSuchBucket(_) => s3_error!(NoSuchBucket),
            Error::BucketNotEmpty(_) => s3_error!(BucketNotEmpty),
            other => {
                tracing::error!(error = %other, "object store failure");
                s3_error!(InternalError, "{other}")
            }
        }
    }
}
