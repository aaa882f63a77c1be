//! Accounts: tokens, users, two-factor sign-in, sessions, teams, SSH keys.

use brokeforge_store::{
    ApiToken, Invitation, KeyDeployment, Member, User, UserSshKey, accounts::SessionInfo,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}

/// A token just created: `token` is shown this once (send it as `Authorization: Bearer TOKEN`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreatedToken {
    pub token: String,
    pub record: ApiToken,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// Two-factor sign-in being set up: the secret for the app, also as an `otpauth://` URI (a QR code).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TwoFactorSetup {
    pub secret: String,
    pub otpauth_uri: String,
}

/// Whether two-factor sign-in is on; when just turned on, the recovery codes (shown this once).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TwoFactorState {
    pub two_factor: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_codes: Vec<String>,
}

/// A browser session; `current` marks the one asking.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionEntry {
    pub session: SessionInfo,
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionEntry>,
}

/// Confirm or turn off two-factor sign-in.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TwoFactorBody {
    /// A code from the app (or, to turn it off, a recovery code).
    pub code: String,
    /// To turn it off: the account's password.
    #[serde(default)]
    pub password: String,
}

/// A team as its member sees it: `role` is the caller's own.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamEntry {
    pub id: i64,
    pub name: String,
    /// The caller's personal team (it takes no members).
    pub personal: bool,
    /// Members must have two-factor sign-in on.
    pub require_two_factor: bool,
    pub role: brokeforge_core::TeamRole,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

impl TeamEntry {
    pub fn of(t: &brokeforge_store::Team, role: brokeforge_core::TeamRole) -> TeamEntry {
        TeamEntry {
            id: t.id,
            name: t.name.clone(),
            personal: t.personal_of.is_some(),
            require_two_factor: t.require_two_factor,
            role,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamList {
    pub teams: Vec<TeamEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamResponse {
    pub team: TeamEntry,
}

/// A team's members; its open invitations are listed to those who may manage members.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamMembers {
    pub team: TeamEntry,
    pub members: Vec<Member>,
    pub invitations: Vec<Invitation>,
}

/// An invitation made: its single-use link path (valid 7 days), and whether it was emailed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InvitationCreated {
    pub invitation: Invitation,
    pub path: String,
    pub emailed: bool,
    /// Why mailing failed, when a mail relay is configured and it did.
    pub email_error: Option<String>,
}

/// A team by id and name (what an invitation leads to).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamRef {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InvitationView {
    pub invitation: Invitation,
    pub team: TeamRef,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JoinedTeam {
    pub team: TeamRef,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NewTeam {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Invite {
    pub email: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SetRole {
    pub email: String,
    pub role: String,
    /// The team's servers (by name) the member is narrowed to; `[]`: all of them; absent: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamSettings {
    pub require_two_factor: bool,
}

/// A personal SSH key and the servers it is on.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SshKeyEntry {
    pub id: i64,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    pub servers: Vec<KeyDeployment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SshKeyList {
    pub keys: Vec<SshKeyEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NewSshKey {
    pub name: String,
    /// One line of `authorized_keys`: `ssh-ed25519 AAAA... comment`.
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SshKeyResponse {
    pub key: UserSshKey,
}

/// A personal key on a server: whose, for which Unix user; `name` and `fingerprint` are absent when the
/// key was deleted from its account and is being taken off.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerKeyEntry {
    pub key_id: i64,
    pub user_id: i64,
    pub unix_user: String,
    /// installing, active, failed or removing.
    pub status: String,
    pub name: Option<String>,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerKeyList {
    pub keys: Vec<ServerKeyEntry>,
}

/// Put one of your keys on a server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct KeyPlacement {
    /// The key's id, name or fingerprint.
    pub key: String,
    /// `brokeforge` (the default) or `root`.
    #[serde(default = "brokeforge_user")]
    pub user: String,
}

fn brokeforge_user() -> String {
    "brokeforge".into()
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenBody {
    pub name: String,
    /// read, deploy or full (the default).
    #[serde(default)]
    pub scope: brokeforge_store::TokenScope,
    /// Days until it stops working; none: until revoked.
    #[serde(default)]
    pub expires_in_days: Option<i64>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct PasswordBody {
    pub password: String,
    /// Required to change one's own password.
    #[serde(default)]
    pub current_password: Option<String>,
}
