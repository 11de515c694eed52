//! Values roost keeps secret at rest (app secrets, apps' S3 secret keys):
//! sealed with XChaCha20-Poly1305 under a 32-byte key in
//! `DATA/secrets.key` (0600), created on first use. Each value is bound to
//! its slot (the associated data), so a sealed value copied to another
//! app, name or kind of slot does not open. The store only ever sees the
//! sealed form.

use crate::error::{MachineError, Result};
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use zeroize::Zeroizing;

const KEY_FILE: &str = "secrets.key";
const NONCE_LEN: usize = 24;

/// What a sealed value belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot<'a> {
    /// App secret `name` of `app`.
    AppSecret { app: &'a str, name: &'a str },
    /// The secret access key of `app`'s S3 key pair.
    StorageKey { app: &'a str },
}

impl Slot<'_> {
    /// The associated data. An app secret's is `app\0name` (as sealed
    /// since secrets existed); a storage key's starts with a NUL, which
    /// no app name does, so the two kinds can never share one.
    fn associated_data(&self) -> String {
        match self {
            Slot::AppSecret { app, name } => format!("{app}\0{name}"),
            Slot::StorageKey { app } => format!("\0storage key\0{app}"),
        }
    }

    /// Why a value did not open, and what the operator can do about it.
    fn broken(&self) -> MachineError {
        MachineError::Internal(match self {
            Slot::AppSecret { app, name } => {
                format!("secret {name} of app {app} cannot be decrypted with {KEY_FILE}; set it again")
            }
            Slot::StorageKey { app } => format!(
                "the S3 secret key of app {app} cannot be decrypted with {KEY_FILE}; restore that file from a backup"
            ),
        })
    }
}

/// The at-rest key, read for each use and zeroized after it.
pub(crate) struct Vault {
    key: Zeroizing<[u8; 32]>,
}

impl Vault {
    /// Reads the key of `data_dir`, creating it (0600) on first use.
    pub(crate) fn open(data_dir: &Path) -> Result<Vault> {
        let path = data_dir.join(KEY_FILE);
        let mut key = Zeroizing::new([0u8; 32]);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                if bytes.len() != 32 {
                    return Err(MachineError::Internal(format!(
                        "{} must hold 32 bytes; restore it from a backup (without it the app secrets cannot be read)",
                        path.display()
                    )));
                }
                key.copy_from_slice(&bytes);
                return Ok(Vault { key });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        chacha20poly1305::aead::rand_core::RngCore::fill_bytes(&mut OsRng, key.as_mut());
        roost_atomic_file::write_new(&path, key.as_ref(), 0o600)?;
        Ok(Vault { key })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.as_ref().into())
    }

    /// `value` sealed for `slot`: nonce and ciphertext, base64.
    pub(crate) fn seal(&self, slot: Slot<'_>, value: &str) -> Result<String> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = slot.associated_data();
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| MachineError::Internal("encrypting a secret failed".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend(ciphertext);
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// The value `sealed` holds, if it was sealed for `slot` under this key.
    pub(crate) fn open_value(&self, slot: Slot<'_>, sealed: &str) -> Result<Zeroizing<String>> {
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| slot.broken())?;
        if sealed.len() < NONCE_LEN {
            return Err(slot.broken());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = slot.associated_data();
        let plain = self
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| slot.broken())?;
        String::from_utf8(plain).map(Zeroizing::new).map_err(|e| {
            let mut bytes = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            slot.broken()
        })
    }

    /// A digest of app secret `name`'s value that changes with the value
    /// but, being keyed, cannot be used to guess it, and being keyed by
    /// app and name too, does not tell that two secrets (of one app or of
    /// two) hold the same value.
    pub(crate) fn digest(&self, app: &str, name: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref())
            .expect("HMAC takes keys of any length");
        mac.update(b"roost app secret digest\0");
        for part in [app, name] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_are_bound_to_their_slot() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let token = Slot::AppSecret {
            app: "app",
            name: "TOKEN",
        };
        let sealed = vault.seal(token, "s3cret").unwrap();
        assert!(!sealed.contains("s3cret"));
        let again = Vault::open(dir.path()).unwrap();
        assert_eq!(again.open_value(token, &sealed).unwrap().as_str(), "s3cret");
        let moved = again
            .open_value(
                Slot::AppSecret {
                    app: "other",
                    name: "TOKEN",
                },
                &sealed,
            )
            .unwrap_err();
        assert!(!moved.to_string().contains("s3cret"));
        for elsewhere in [
            Slot::AppSecret {
                app: "app",
                name: "OTHER",
            },
            Slot::StorageKey { app: "app" },
        ] {
            assert!(again.open_value(elsewhere, &sealed).is_err());
        }
        let key = vault.seal(Slot::StorageKey { app: "app" }, "k3y").unwrap();
        assert_eq!(
            again
                .open_value(Slot::StorageKey { app: "app" }, &key)
                .unwrap()
                .as_str(),
            "k3y"
        );
        assert!(again
            .open_value(Slot::StorageKey { app: "other" }, &key)
            .is_err());
        assert_eq!(vault.digest("app", "A", "a"), again.digest("app", "A", "a"));
        assert_ne!(vault.digest("app", "A", "a"), vault.digest("app", "A", "b"));
    }

    #[test]
    fn security_equal_values_have_unequal_digests_across_names_and_apps() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(dir.path()).unwrap();
        let digests = [
            vault.digest("app", "A", "same"),
            vault.digest("app", "B", "same"),
            vault.digest("other", "A", "same"),
            // Parts are delimited: ("ap", "pA") is not ("app", "A").
            vault.digest("ap", "pA", "same"),
        ];
        for (i, a) in digests.iter().enumerate() {
            for b in &digests[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
