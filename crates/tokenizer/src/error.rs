use http::StatusCode;

/// Why the tokenizer refused a request or could not start.
///
/// Messages are shown to the client verbatim, so they say what was wrong
/// and never quote a secret: JSON errors give a position, not the text
/// around it, and tokens are never formatted into them.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// Malformed header, sealed token, secret, params, or a host the secret
    /// does not allow (400).
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong `Proxy-Authorization` for a secret (407).
    #[error("{0}")]
    ProxyAuth(String),
    /// A destination the guard never lets egress reach: the host, private
    /// ranges, metadata addresses, other apps (403).
    #[error("{0}")]
    Destination(String),
    /// A method the tokenizer refuses, i.e. CONNECT (405).
    #[error("{0}")]
    Method(String),
    /// The upstream could not be reached or failed mid-request (502).
    #[error("{0}")]
    Upstream(String),
    /// Key files and TLS configuration at startup.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

impl TokenizerError {
    pub(crate) fn bad(message: impl Into<String>) -> TokenizerError {
        TokenizerError::BadRequest(message.into())
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> TokenizerError {
        TokenizerError::Io {
            context: context.into(),
            source,
        }
    }

    /// The HTTP status superfly/tokenizer answers this refusal with.
    pub fn status(&self) -> StatusCode {
        match self {
            TokenizerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            TokenizerError::ProxyAuth(_) => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            TokenizerError::Destination(_) => StatusCode::FORBIDDEN,
            TokenizerError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            TokenizerError::Upstream(_) => StatusCode::BAD_GATEWAY,
            TokenizerError::Io { .. } | TokenizerError::Config(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, TokenizerError>;
