//! The spec's `Enums/` layer. Each enum has a stable lowercase key used in the database and the API.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Error for a key that names no variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident ($kind:literal) { $($(#[$vmeta:meta])* $variant:ident => $key:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $key),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($key => Ok($name::$variant),)+
                    _ => Err(UnknownVariant { kind: $kind, value: s.to_string() }),
                }
            }
        }
    };
}

string_enum! {
    /// Service categories (spec: `ServiceType`).
    ServiceType ("service type") {
        Database => "database",
        Server => "server",
        Webserver => "webserver",
        Site => "site",
        Backup => "backup",
        Cache => "cache",
        Runtime => "runtime",
        Monitoring => "monitoring",
    }
}

string_enum! {
    /// A team member's role, from most to least rights (the policy table is `brokeforge_domain::policy`).
    TeamRole ("team role") {
        Owner => "owner",
        Admin => "admin",
        Developer => "developer",
        Viewer => "viewer",
    }
}

impl TeamRole {
    /// Rank for comparisons: an inviter may not grant more than they have.
    pub fn rank(self) -> u8 {
        match self {
            TeamRole::Owner => 3,
            TeamRole::Admin => 2,
            TeamRole::Developer => 1,
            TeamRole::Viewer => 0,
        }
    }
}

string_enum! {
    /// Whether a provision run installs or removes.
    ProvisionType ("provision type") {
        Install => "install",
        Uninstall => "uninstall",
    }
}

string_enum! {
    /// A server's provisioning state (spec: `ProvisionStatus`).
    ProvisionStatus ("provision status") {
        Pending => "pending",
        Installing => "installing",
        Provisioned => "provisioned",
        Failed => "failed",
    }
}

string_enum! {
    /// Whether BrokeForge can reach a server over SSH (spec: `Connection`).
    ConnectionStatus ("connection status") {
        Pending => "pending",
        Connected => "connected",
        Failed => "failed",
    }
}

string_enum! {
    /// State of an installed service or site record.
    ServiceStatus ("service status") {
        Installing => "installing",
        Active => "active",
        Removing => "removing",
        Failed => "failed",
    }
}

string_enum! {
    /// State of one provision event (one milestone of one run).
    EventStatus ("event status") {
        InProgress => "in_progress",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

string_enum! {
    /// The remote account a package runs as (spec: `RootCredential`, `UserCredential`, `WorkerCredential`).
    CredentialKind ("credential") {
        Root => "root",
        User => "user",
        Worker => "worker",
        /// The user's own root key for direct onboarding: used once to install BrokeForge's keys, then deleted.
        Bootstrap => "bootstrap",
    }
}

impl CredentialKind {
    /// The Unix user name on the server.
    pub fn unix_user(self) -> &'static str {
        match self {
            CredentialKind::Root | CredentialKind::Bootstrap => "root",
            CredentialKind::User => "brokeforge",
            CredentialKind::Worker => "worker",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for t in ServiceType::ALL {
            assert_eq!(t.as_str().parse::<ServiceType>().unwrap(), *t);
        }
        for s in EventStatus::ALL {
            assert_eq!(s.as_str().parse::<EventStatus>().unwrap(), *s);
        }
        let err = "nope".parse::<ProvisionType>().unwrap_err();
        assert_eq!(err.to_string(), "unknown provision type `nope`");
    }

    #[test]
    fn serde_uses_the_stable_keys() {
        assert_eq!(
            serde_json::to_string(&EventStatus::InProgress).unwrap(),
            "\"in_progress\""
        );
        assert_eq!(CredentialKind::User.unix_user(), "brokeforge");
    }
}
