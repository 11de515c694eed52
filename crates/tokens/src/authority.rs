//! A roost's tokens as a server keeps them: who a presented token is,
//! issuing narrower tokens, and the record of what was issued and
//! revoked (ids and caveats, never a token).

use crate::{Caveats, Minted, RevocationId, RootKey, TokenError, Verified, Verifier};
use roost_lifecycle::Who;
use roost_types::{TokenCaveats, TokenInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The tokens of one root key: the admin token, those issued through the
/// API, and the revoked ids. Where its record file lives is its opener's
/// choice.
pub struct Authority {
    verifier: Verifier,
    admin: String,
    admin_verified: Arc<Verified>,
    /// The admin token of a data dir from before tokens were biscuits: a
    /// random secret, still accepted as the admin token.
    legacy: Option<String>,
    record: RwLock<Record>,
    path: PathBuf,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("admin", self.admin_verified.id())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What is kept of the issued tokens (the record file's JSON).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    tokens: Vec<TokenInfo>,
    revoked: BTreeSet<String>,
}

/// A presented token that verified: who holds it, and the token, to
/// decide each call and to derive narrower tokens from.
#[derive(Debug, Clone)]
pub struct Holder {
    pub who: Who,
    pub token: Arc<Verified>,
}

impl Authority {
    /// The tokens of `key`, whose admin token is `admin` (a token of
    /// `key`), with the record kept at `record` (read if it exists).
    pub fn open(
        key: &RootKey,
        admin: &str,
        legacy: Option<String>,
        record: PathBuf,
    ) -> Result<Authority, TokenError> {
        let verifier = key.verifier();
        let admin_verified = verifier.verify(admin, |_| false)?;
        let kept = match std::fs::read(&record) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                TokenError::Record(format!("{} is not a token record: {err}", record.display()))
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Record::default(),
            Err(err) => {
                return Err(TokenError::Record(format!(
                    "cannot read {}: {err}",
                    record.display()
                )))
            }
        };
        Ok(Authority {
            verifier,
            admin: admin.trim().to_string(),
            admin_verified,
            legacy: legacy.map(|token| token.trim().to_string()),
            record: RwLock::new(kept),
            path: record,
        })
    }

    /// Who holds `presented`, if it is a token of this roost that is not
    /// revoked. The admin token (or the legacy one) is [`Who::Admin`];
    /// any other is named by the newest issued token it is derived from.
    pub fn authenticate(&self, presented: &str) -> Result<Holder, TokenError> {
        let presented = presented.trim();
        let is = |secret: &str| constant_time_eq(presented.as_bytes(), secret.as_bytes());
        if is(&self.admin) || self.legacy.as_deref().is_some_and(is) {
            return Ok(Holder {
                who: Who::Admin,
                token: Arc::clone(&self.admin_verified),
            });
        }
        let record = self.read();
        let token = self
            .verifier
            .verify(presented, |id| record.revoked.contains(&id.0))?;
        let issued = token
            .block_ids()
            .iter()
            .rev()
            .find(|id| record.tokens.iter().any(|t| t.id == id.0))
            .unwrap_or(token.id());
        Ok(Holder {
            who: Who::Token {
                id: issued.to_string(),
            },
            token,
        })
    }

    /// A new token derived from `parent` (so never allowing more than it)
    /// and narrowed by `caveats`, recorded by its id and caveats.
    pub fn issue(&self, parent: &Verified, caveats: &TokenCaveats) -> Result<Minted, TokenError> {
        let minted = parent.attenuate(&Caveats::from_wire(caveats)?)?;
        let mut record = self.write();
        record.tokens.push(TokenInfo {
            id: minted.id.to_string(),
            caveats: caveats.clone(),
            created_at: chrono::Utc::now(),
        });
        self.save(&record)?;
        Ok(minted)
    }

    /// The issued tokens that are not revoked, oldest first.
    pub fn list(&self) -> Vec<TokenInfo> {
        self.read().tokens.clone()
    }

    /// Revokes the issued token `id`, and so every token derived from it.
    pub fn revoke(&self, id: &str) -> Result<(), TokenError> {
        let mut record = self.write();
        let Some(at) = record.tokens.iter().position(|t| t.id == id) else {
            return Err(TokenError::NotIssued(RevocationId(id.to_string())));
        };
        record.tokens.remove(at);
        record.revoked.insert(id.to_string());
        self.save(&record)
    }

    fn save(&self, record: &Record) -> Result<(), TokenError> {
        let json =
            serde_json::to_vec_pretty(record).map_err(|err| TokenError::Record(err.to_string()))?;
        roost_atomic_file::write(&self.path, &json, 0o600).map_err(|err| {
            TokenError::Record(format!("cannot write {}: {err}", self.path.display()))
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Record> {
        self.record.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Record> {
        self.record.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Compares secrets without leaking, through timing, how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
