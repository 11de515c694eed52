//! API tokens with caveats: a token lets its holder do what its caveats
//! allow and nothing more, and any holder can derive a narrower one
//! without asking the server.
//!
//! # Why biscuit
//!
//! A token is a [biscuit](https://www.biscuitsec.org) (`biscuit-auth`):
//! - **Public-key signatures.** roost signs with a root private key
//!   ([`RootKey`]); checking a token needs only the public half
//!   ([`Verifier`]), so whatever verifies tokens (another host, a proxy)
//!   never holds what mints them. Macaroons, Fly's choice, chain HMACs
//!   instead: every verifier holds the minting secret.
//! - **Caveats are Datalog checks**, evaluated by one engine against facts
//!   the verifier states about the request (below), rather than ad-hoc
//!   comparisons in each caller.
//! - **Offline attenuation.** Each block of a token is signed with a key
//!   the previous block hands on, so a holder appends a block of further
//!   checks ([`attenuate`]) with nothing but the token. Every check of every
//!   block must pass, so a derived token can never do more than its parent:
//!   widening is not expressible, not merely refused.
//!
//! # Format
//!
//! Every caveat of [`Caveats`] becomes one check, in the authority block
//! when [`RootKey::mint`] makes the token, in an appended block when
//! [`attenuate`] narrows it. [`Verified::authorize`] states the request as
//! facts and requires every check to hold:
//!
//! | fact | present |
//! |---|---|
//! | `right($r)` | always: the [`Right`] the call needs, by [`Right::as_str`] |
//! | `app($a)` | when the target is an app or one of its machines |
//! | `machine($m)` | when the target is a machine |
//! | `operation($o)` | always: `"create"` for a machine create, `"call"` otherwise |
//! | `command($argv)` | for an exec: its argument vector, an array of strings |
//! | `create($name, $count)` | for a machine create: its name and how many machines the app then has |
//! | `time($t)` | always: now |
//!
//! A check mentioning no fact of the request (say, one appended by hand
//! that reads `false`) refuses everything, which is as narrow as it gets.
//!
//! # Revocation and rotation
//!
//! A token's id is the revocation id of its first block ([`RevocationId`]),
//! which every token derived from it shares: revoking that id revokes the
//! whole family. The server stores ids, never tokens. Each root key has a
//! number that tokens carry; [`RootKey::rotated`] makes the next one, and a
//! [`Verifier`] of the new key refuses every token of the old one.

mod authority;
mod caveats;
mod keys;
mod verify;

pub use authority::{Authority, Holder};
pub use caveats::{attenuate, Apps, Caveats, Command};
pub use keys::{RootKey, Verifier};
pub use roost_lifecycle::{Right, Rights, Target};
pub use verify::{Caveat, Refusal, Request, Verified};

/// A token's id: the revocation id of its first block, as hex. Tokens
/// derived from a token share its id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevocationId(pub String);

impl std::fmt::Display for RevocationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A freshly minted token and its id.
#[derive(Debug, Clone)]
pub struct Minted {
    pub id: RevocationId,
    /// The token as its holder sends it (URL-safe base64).
    pub token: String,
}

/// Why a token is not accepted at all (a front end's 401), or cannot be
/// made. Messages describe the token, never quote it.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a token: bad encoding, truncated, not a biscuit.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// A signature does not verify: the token was altered after signing.
    #[error("the token's signature does not verify: it was altered or is not this roost's")]
    Forged,
    /// Signed by a root key this verifier does not hold: one rotated out,
    /// or another roost's.
    #[error("{}", unknown_root(*token_key, *current))]
    UnknownRoot {
        token_key: Option<u32>,
        current: u32,
    },
    #[error("the token {0} has been revoked")]
    Revoked(RevocationId),
    /// Revoking an id that names no token this roost issued.
    #[error("no token {0} was issued by this roost (or it is revoked already)")]
    NotIssued(RevocationId),
    /// The record of issued and revoked tokens cannot be read or written.
    #[error("the token record: {0}")]
    Record(String),
    /// Caveats that cannot be written as checks, or a key that cannot be
    /// loaded.
    #[error("{0}")]
    Invalid(String),
}

fn unknown_root(token_key: Option<u32>, current: u32) -> String {
    match token_key {
        Some(key) => format!(
            "the token was signed by root key {key}, not by this roost's current root key \
             {current}: its root key was rotated out, or it belongs to another roost"
        ),
        None => format!(
            "the token names no root key: this roost signs with root key {current}, so it \
             belongs to another issuer"
        ),
    }
}

/// The first block's revocation id of a token's identifiers: the token's
/// id.
fn first_id(ids: &[Vec<u8>]) -> Result<RevocationId, TokenError> {
    ids.first()
        .map(|id| RevocationId(hex(id)))
        .ok_or_else(|| TokenError::Malformed("it has no block".into()))
}

/// The last block's revocation id: the id of a token made by
/// [`Verified::attenuate`].
fn last_id(ids: &[Vec<u8>]) -> Result<RevocationId, TokenError> {
    ids.last()
        .map(|id| RevocationId(hex(id)))
        .ok_or_else(|| TokenError::Malformed("it has no block".into()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A parse or verification failure of `biscuit-auth`, as roost names it.
fn token_error(err: biscuit_auth::error::Token) -> TokenError {
    use biscuit_auth::error::{Format, Token};
    match err {
        Token::Format(
            Format::Signature(_) | Format::SealedSignature | Format::InvalidSignatureSize(_),
        ) => TokenError::Forged,
        Token::Format(format) => TokenError::Malformed(format.to_string()),
        Token::Base64(err) => TokenError::Malformed(format!("not base64 ({err})")),
        other => TokenError::Invalid(other.to_string()),
    }
}
