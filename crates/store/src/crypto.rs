//! Secrets at rest: XChaCha20-Poly1305 under a master key kept outside the database.
//! Every ciphertext is bound to the row it belongs to (associated data), so a value copied into another row
//! does not decrypt.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

use crate::StoreError;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// The 32-byte master key.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(********)")
    }
}

impl MasterKey {
    pub fn generate() -> Result<Self, StoreError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut key[..])
            .map_err(|e| StoreError::Crypto(format!("no randomness: {e}")))?;
        Ok(MasterKey(key))
    }

    /// Parse the 64 hex characters of `BROKEFORGE_MASTER_KEY` or of the key file.
    pub fn from_hex(text: &str) -> Result<Self, StoreError> {
        let bytes =
            Zeroizing::new(hex::decode(text.trim()).map_err(|_| StoreError::BadMasterKeyFormat)?);
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::BadMasterKeyFormat)?;
        Ok(MasterKey(Zeroizing::new(arr)))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.0[..]))
    }

    /// Read the key file, or create it (mode 0600, never overwriting) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, StoreError> {
        let io = |e: std::io::Error| StoreError::MasterKeyFile {
            path: path.display().to_string(),
            source: e,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let key = Self::generate()?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut file = opts.open(path).map_err(io)?;
                file.write_all(key.to_hex().as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// Encrypts and decrypts values bound to a context string (table, row, column).
#[derive(Clone)]
pub struct Cipher {
    aead: XChaCha20Poly1305,
}

impl Cipher {
    pub fn new(key: &MasterKey) -> Self {
        Cipher {
            aead: XChaCha20Poly1305::new((&*key.0).into()),
        }
    }

    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreError::Crypto(format!("no randomness: {e}")))?;
        let ct = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Open a sealed text (a password, a private key) as a [`Secret`].
    pub fn open_secret(
        &self,
        context: &str,
        sealed: &[u8],
    ) -> Result<brokeforge_core::Secret, StoreError> {
        let plain = self.open(context, sealed)?;
        String::from_utf8(plain.to_vec())
            .map(brokeforge_core::Secret::new)
            .map_err(|_| StoreError::InvalidData(format!("{context}: the secret is not text")))
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(StoreError::Decrypt {
                context: context.to_string(),
            });
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        self.aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| StoreError::Decrypt {
                context: context.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let c = Cipher::new(&MasterKey::generate().unwrap());
        let sealed = c.seal("server_credentials:1:root", b"secret").unwrap();
        assert_eq!(
            &c.open("server_credentials:1:root", &sealed).unwrap()[..],
            b"secret"
        );
        assert!(c.open("server_credentials:2:root", &sealed).is_err());
        let other = Cipher::new(&MasterKey::generate().unwrap());
        assert!(other.open("server_credentials:1:root", &sealed).is_err());
    }

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let a = MasterKey::load_or_create(&path).unwrap();
        let b = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(*a.to_hex(), *b.to_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(MasterKey::from_hex("abcd").is_err());
    }
}
