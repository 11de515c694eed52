//! The root key that signs tokens, and the verifier that checks them.

use crate::verify::Verified;
use crate::{first_id, token_error, Caveats, Minted, RevocationId, TokenError};
use biscuit_auth::builder::Algorithm;
use biscuit_auth::{error, Biscuit, KeyPair, PrivateKey, PublicKey, UnverifiedBiscuit};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The key tokens are signed with, and its number, which every token it
/// signs carries. Whoever holds it mints tokens; keep it as secret as the
/// admin token.
pub struct RootKey {
    id: u32,
    pair: KeyPair,
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootKey").field("id", &self.id).finish()
    }
}

impl RootKey {
    /// A new random key (Ed25519) numbered `id`.
    pub fn generate(id: u32) -> RootKey {
        RootKey {
            id,
            pair: KeyPair::new(),
        }
    }

    /// The key numbered `id` whose private half is `bytes`
    /// ([`RootKey::private_bytes`]).
    pub fn from_private_bytes(id: u32, bytes: &[u8]) -> Result<RootKey, TokenError> {
        let private = PrivateKey::from_bytes(bytes, Algorithm::Ed25519)
            .map_err(|err| TokenError::Invalid(format!("not a root key: {err}")))?;
        Ok(RootKey {
            id,
            pair: KeyPair::from(&private),
        })
    }

    /// The private half, to store (it is all [`RootKey::from_private_bytes`]
    /// needs besides the number).
    pub fn private_bytes(&self) -> Vec<u8> {
        self.pair.private().to_bytes().to_vec()
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The key that replaces this one: the next number, a new secret.
    /// Tokens this key signed are refused by the new key's verifier.
    pub fn rotated(&self) -> RootKey {
        RootKey::generate(self.id.wrapping_add(1))
    }

    /// What checks the tokens this key signs.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            id: self.id,
            public: self.pair.public(),
            verified: Arc::default(),
        }
    }

    /// A new token allowing what `caveats` allow.
    pub fn mint(&self, caveats: &Caveats) -> Result<Minted, TokenError> {
        let token = Biscuit::builder()
            .merge(caveats.block()?)
            .root_key_id(self.id)
            .build(&self.pair)
            .map_err(token_error)?;
        Ok(Minted {
            id: first_id(&token.revocation_identifiers())?,
            token: token.to_base64().map_err(token_error)?,
        })
    }
}

/// Verified tokens a [`Verifier`] keeps, at most: a client sends the same
/// token with every request, and checking its signatures again costs
/// more than all the rest of a request's check (`benches/verify.rs`).
/// When full, the cache is emptied rather than managed: tokens in use
/// are verified again once.
const MAX_CACHED: usize = 4096;

/// Checks tokens signed by one root key: its public half and number.
/// Clones share one cache of the tokens already verified, so a token's
/// signatures are checked once; its revocation is asked about on every
/// call, and expiry is a caveat, decided with each request.
#[derive(Debug, Clone)]
pub struct Verifier {
    id: u32,
    public: PublicKey,
    verified: Arc<Mutex<HashMap<String, Arc<Verified>>>>,
}

impl Verifier {
    /// `token`'s signatures, its root key and its revocation, then the
    /// token ready to authorize requests. `is_revoked` is asked about the
    /// id of each block (the first is the token's id, shared by every
    /// token derived from it).
    pub fn verify(
        &self,
        token: &str,
        is_revoked: impl Fn(&RevocationId) -> bool,
    ) -> Result<Arc<Verified>, TokenError> {
        let token = token.trim();
        let known = self.cache().get(token).cloned();
        let verified = match known {
            Some(verified) => verified,
            None => {
                let verified = Arc::new(self.check_signatures(token)?);
                let mut cache = self.cache();
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(token.to_string(), verified.clone());
                verified
            }
        };
        if let Some(id) = verified.block_ids().iter().find(|id| is_revoked(id)) {
            return Err(TokenError::Revoked(id.clone()));
        }
        Ok(verified)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Verified>>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decodes `token` and checks that this key signed it.
    fn check_signatures(&self, token: &str) -> Result<Verified, TokenError> {
        let unverified = UnverifiedBiscuit::from_base64(token).map_err(token_error)?;
        let token_key = unverified.root_key_id();
        if token_key != Some(self.id) {
            return Err(TokenError::UnknownRoot {
                token_key,
                current: self.id,
            });
        }
        let public = self.public;
        let biscuit = unverified
            .verify(move |_| Ok::<PublicKey, error::Format>(public))
            .map_err(|err| token_error(err.into()))?;
        let ids: Vec<RevocationId> = biscuit
            .revocation_identifiers()
            .iter()
            .map(|id| RevocationId(crate::hex(id)))
            .collect();
        if ids.is_empty() {
            return Err(TokenError::Malformed("it has no block".into()));
        }
        Ok(Verified::new(biscuit, ids))
    }
}
