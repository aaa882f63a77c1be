//! Per-server key pairs (ed25519) and fingerprints.

use brokeforge_core::Secret;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey, ssh_key::LineEnding};

use crate::SshError;

/// A freshly generated key pair: the private half in OpenSSH format, to be sealed by the store.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub public_openssh: String,
    pub private_openssh: Secret,
    pub fingerprint: String,
}

pub fn generate_ed25519(comment: &str) -> Result<KeyPair, SshError> {
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| SshError::Key(e.to_string()))?;
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| SshError::Key(e.to_string()))?;
    let public_openssh = key
        .public_key()
        .to_openssh()
        .map_err(|e| SshError::Key(e.to_string()))?;
    Ok(KeyPair {
        public_openssh,
        private_openssh: Secret::new(private.as_str()),
        fingerprint: key.public_key().fingerprint(HashAlg::Sha256).to_string(),
    })
}

pub fn parse_private(pem: &Secret) -> Result<PrivateKey, SshError> {
    PrivateKey::from_openssh(pem.expose())
        .map_err(|e| SshError::Key(format!("cannot read private key: {e}")))
}

pub fn parse_public(openssh: &str) -> Result<PublicKey, SshError> {
    PublicKey::from_openssh(openssh.trim())
        .map_err(|e| SshError::Key(format!("cannot read public key: {e}")))
}

/// The `SHA256:...` fingerprint of a public key in OpenSSH format, as `ssh-keygen -l` prints it.
pub fn fingerprint(openssh_public: &str) -> Result<String, SshError> {
    Ok(parse_public(openssh_public)?
        .fingerprint(HashAlg::Sha256)
        .to_string())
}

/// Check a user-supplied fingerprint: `SHA256:` followed by 43 unpadded base64 characters.
pub fn validate_fingerprint(value: &str) -> Result<String, brokeforge_core::ValidationError> {
    let v = value.trim();
    let ok = v.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    });
    if ok {
        Ok(v.to_string())
    } else {
        Err(brokeforge_core::ValidationError::new(
            "host_key_fingerprint",
            format!("`{v}` is not a SHA256 fingerprint like SHA256:abc...(43 characters)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip() {
        let kp = generate_ed25519("brokeforge@server-1").unwrap();
        assert!(kp.public_openssh.starts_with("ssh-ed25519 "));
        assert!(kp.public_openssh.ends_with("brokeforge@server-1"));
        let back = parse_private(&kp.private_openssh).unwrap();
        assert_eq!(back.public_key().to_openssh().unwrap(), kp.public_openssh);
        assert_eq!(fingerprint(&kp.public_openssh).unwrap(), kp.fingerprint);
        assert!(validate_fingerprint(&kp.fingerprint).is_ok());
        assert!(validate_fingerprint("SHA256:short").is_err());
        assert!(validate_fingerprint("MD5:aa").is_err());
        // Two generations differ.
        assert_ne!(generate_ed25519("x").unwrap().fingerprint, kp.fingerprint);
    }
}
