//! The tokenizer's X25519 keypair and NaCl sealed boxes
//! (`crypto_box_seal`): anyone with the public "seal key" can seal a
//! secret; only the holder of the private "open key" can read it.

use crate::error::{Result, TokenizerError};
use base64::Engine;
use crypto_box::aead::OsRng;
use std::path::Path;
use zeroize::Zeroizing;

/// Overhead of a sealed box: ephemeral public key (32) plus MAC (16).
const SEAL_OVERHEAD: usize = 48;

/// The private key that opens sealed secrets. Zeroized on drop.
pub struct OpenKey(crypto_box::SecretKey);

/// The public key clients seal secrets to, shown as 64 hex characters
/// (the format superfly/tokenizer's `SEAL_KEY` uses).
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey(crypto_box::PublicKey);

impl OpenKey {
    /// Reads the key at `path` (hex, as superfly/tokenizer's `OPEN_KEY`),
    /// creating it with mode 0600 on first use.
    pub fn load_or_create(path: &Path) -> Result<OpenKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => return OpenKey::from_hex(&Zeroizing::new(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(TokenizerError::io(
                    format!("cannot read {}", path.display()),
                    e,
                ))
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| TokenizerError::io(format!("cannot create {}", dir.display()), e))?;
        }
        let key = crypto_box::SecretKey::generate(&mut OsRng);
        let text = Zeroizing::new(format!("{}\n", hex::encode(key.to_bytes())));
        roost_atomic_file::write(path, text.as_bytes(), 0o600)
            .map_err(|e| TokenizerError::io(format!("cannot write {}", path.display()), e))?;
        tracing::info!(path = %path.display(), "created the tokenizer's keypair");
        Ok(OpenKey(key))
    }

    fn from_hex(text: &str) -> Result<OpenKey> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), bytes.as_mut()).map_err(|_| {
            TokenizerError::Config(
                "the tokenizer's open key file must hold 64 hex characters".into(),
            )
        })?;
        Ok(OpenKey(crypto_box::SecretKey::from(*bytes)))
    }

    pub fn seal_key(&self) -> SealKey {
        SealKey(self.0.public_key())
    }

    /// Opens a base64 sealed box. The plaintext is zeroized when dropped.
    pub(crate) fn open(&self, sealed_b64: &str) -> Result<Zeroizing<Vec<u8>>> {
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(sealed_b64)
            .map_err(|e| {
                TokenizerError::bad(format!(
                    "sealed secret in Proxy-Tokenizer is not valid base64 (standard alphabet, padded): {e}"
                ))
            })?;
        if sealed.len() < SEAL_OVERHEAD {
            return Err(TokenizerError::bad(format!(
                "sealed secret in Proxy-Tokenizer is truncated: {} bytes, a sealed box has at least {SEAL_OVERHEAD}",
                sealed.len()
            )));
        }
        self.0.unseal(&sealed).map(Zeroizing::new).map_err(|_| {
            TokenizerError::bad(
                "sealed secret in Proxy-Tokenizer cannot be opened: it was not sealed to this tokenizer's key (see GET /v1/tokenizer/public-key) or is corrupt",
            )
        })
    }
}

impl SealKey {
    /// Seals `plaintext` to this key; returns the base64 token clients send.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String> {
        let sealed = self
            .0
            .seal(&mut OsRng, plaintext)
            .map_err(|_| TokenizerError::Config("sealing failed".into()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }
}

impl std::fmt::Display for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({self})")
    }
}

impl std::str::FromStr for SealKey {
    type Err = TokenizerError;

    fn from_str(text: &str) -> Result<SealKey> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| {
            TokenizerError::Config(
                "a seal key is 64 hex characters (the tokenizer's X25519 public key)".into(),
            )
        })?;
        Ok(SealKey(crypto_box::PublicKey::from(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_and_seal_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer/open-key");
        let key = OpenKey::load_or_create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = OpenKey::load_or_create(&path).unwrap();
        assert_eq!(key.seal_key(), again.seal_key());
        let seal: SealKey = key.seal_key().to_string().parse().unwrap();
        let token = seal.seal(b"hello").unwrap();
        assert_eq!(again.open(&token).unwrap().as_slice(), b"hello");
    }

    #[test]
    fn bad_boxes_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let key = OpenKey::load_or_create(&dir.path().join("k")).unwrap();
        let other = OpenKey::load_or_create(&dir.path().join("o")).unwrap();
        let msg = |r: Result<Zeroizing<Vec<u8>>>| r.err().unwrap().to_string();
        assert!(msg(key.open("%%%")).contains("base64"));
        assert!(msg(key.open("AAAA")).contains("truncated"));
        let foreign = other.seal_key().seal(b"x").unwrap();
        assert!(msg(key.open(&foreign)).contains("not sealed to this tokenizer"));
    }
}
