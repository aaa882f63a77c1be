//! Host-key policy in one place: what a server's pinned fingerprint (or its absence) says about the key it
//! presents. Shaped after warpgate's `known_hosts.rs` (`Valid | Invalid | Unknown`).

use crate::SshError;

/// What to do with the server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Accept only this `SHA256:` fingerprint.
    Pinned(String),
    /// Nothing pinned yet and the user allowed trust on first use: accept and report the key.
    TrustOnFirstUse,
    /// Nothing pinned and trust on first use not allowed: refuse, reporting the key.
    Refuse,
}

/// How a presented key fares against the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The pinned key, or a first key the user allowed to trust.
    Valid,
    /// Another key than the pinned one: someone may be in between.
    Invalid { expected: String },
    /// Nothing pinned and trust on first use not allowed.
    Unknown,
}

impl HostKeyPolicy {
    /// The policy for a server: its pinned fingerprint, else trust on first use only when allowed.
    pub fn for_server(pinned: Option<&str>, trust_on_first_use: bool) -> HostKeyPolicy {
        match pinned {
            Some(fp) => HostKeyPolicy::Pinned(fp.to_string()),
            None if trust_on_first_use => HostKeyPolicy::TrustOnFirstUse,
            None => HostKeyPolicy::Refuse,
        }
    }

    pub fn validate(&self, fingerprint: &str) -> Verdict {
        match self {
            HostKeyPolicy::Pinned(pinned) if pinned == fingerprint => Verdict::Valid,
            HostKeyPolicy::Pinned(pinned) => Verdict::Invalid {
                expected: pinned.clone(),
            },
            HostKeyPolicy::TrustOnFirstUse => Verdict::Valid,
            HostKeyPolicy::Refuse => Verdict::Unknown,
        }
    }

    /// The error a refused key becomes, naming both fingerprints; `None` for a key the policy accepts.
    pub fn refusal(&self, host: &str, fingerprint: &str) -> Option<SshError> {
        match self.validate(fingerprint) {
            Verdict::Valid => None,
            Verdict::Invalid { expected } => Some(SshError::HostKeyMismatch {
                host: host.to_string(),
                expected,
                actual: fingerprint.to_string(),
            }),
            Verdict::Unknown => Some(SshError::HostKeyUnknown {
                host: host.to_string(),
                actual: fingerprint.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let pinned = HostKeyPolicy::for_server(Some("SHA256:a"), true);
        assert_eq!(pinned.validate("SHA256:a"), Verdict::Valid);
        assert_eq!(
            pinned.validate("SHA256:b"),
            Verdict::Invalid {
                expected: "SHA256:a".into()
            }
        );
        assert!(matches!(
            pinned.refusal("h:22", "SHA256:b"),
            Some(SshError::HostKeyMismatch { .. })
        ));
        assert_eq!(
            HostKeyPolicy::for_server(None, true).validate("SHA256:b"),
            Verdict::Valid
        );
        let refuse = HostKeyPolicy::for_server(None, false);
        assert_eq!(refuse.validate("SHA256:b"), Verdict::Unknown);
        assert!(matches!(
            refuse.refusal("h:22", "SHA256:b"),
            Some(SshError::HostKeyUnknown { .. })
        ));
    }
}
