//! roost's tokenizer: an HTTP forward proxy, wire-compatible with
//! superfly/tokenizer, that swaps sealed secrets for real credentials.
//!
//! A robot holds only a sealed token: `base64(crypto_box_seal(json(secret),
//! seal_key))`. It sends plain-HTTP absolute-form requests through the
//! proxy with `Proxy-Tokenizer: <sealed>[; {params}]` and
//! `Proxy-Authorization`; the tokenizer opens the secret, checks the auth
//! and the host it is about to dial, injects the credential, strips both
//! proxy headers and forwards the request over TLS. Nothing but this
//! process ever holds the plaintext.
//!
//! Usable alone: [`OpenKey`] keeps the keypair, [`SealKey::seal`] seals on
//! the client, [`Tokenizer::workers`] serves the proxy on any number of listeners.

mod connect;
mod error;
mod header;
mod inject;
mod keys;
mod proxy;
mod secret;
mod sigv4;

pub use error::{Result, TokenizerError};
pub use header::ProxyTokenizerHeader;
pub use keys::{OpenKey, SealKey};
pub use proxy::{
    error_chain, host_header_names, strip_hop_by_hop, Prepared, Tokenizer, TokenizerConfig,
};
pub use secret::Secret;
