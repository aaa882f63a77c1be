//! The one policy table: what each team role may do. Every route names its [`Action`] (the API's route
//! table and the pages' table); the extractors that find a server, site, job or deployment check the
//! caller's role against this table before any handler runs. Handlers never decide by themselves.

use brokeforge_core::TeamRole;

/// What a request does to a team's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Look at servers, sites, jobs, deployments, logs, firewall rules, backups (no secrets).
    Read,
    /// Read a site's .env.
    ReadEnv,
    /// Read credentials: webhook secrets, backup recovery kits, snapshot downloads.
    ReadCredentials,
    /// Deploy, roll back, cancel or retry jobs.
    Deploy,
    /// Run commands in a site.
    SiteCommand,
    /// Change a site's .env, deploy script, settings, scheduled commands and daemons, webhook, repository.
    SiteConfigure,
    /// Create and drop the databases and database users of sites.
    Databases,
    /// Root-level changes: packages, sites, certificates, firewall, backups, host keys.
    ServerManage,
    /// Forget a server (or take BrokeForge off it).
    ServerRemove,
    /// Invite, change and remove members; team settings.
    Members,
    /// The caller's own account (no team object involved).
    Account,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::Read,
        Action::ReadEnv,
        Action::ReadCredentials,
        Action::Deploy,
        Action::SiteCommand,
        Action::SiteConfigure,
        Action::Databases,
        Action::ServerManage,
        Action::ServerRemove,
        Action::Members,
        Action::Account,
    ];

    /// How a refusal words it.
    pub fn describe(self) -> &'static str {
        match self {
            Action::Read => "see this",
            Action::ReadEnv => "read a site's environment",
            Action::ReadCredentials => "read credentials",
            Action::Deploy => "deploy",
            Action::SiteCommand => "run site commands",
            Action::SiteConfigure => "change a site's configuration",
            Action::Databases => "manage databases",
            Action::ServerManage => "make root-level changes to servers",
            Action::ServerRemove => "remove servers",
            Action::Members => "manage the team's members",
            Action::Account => "manage your account",
        }
    }
}

/// The policy table.
pub fn allows(role: TeamRole, action: Action) -> bool {
    use Action::*;
    match role {
        TeamRole::Owner => true,
        TeamRole::Admin => action != Members,
        TeamRole::Developer => matches!(
            action,
            Read | ReadEnv | Deploy | SiteCommand | SiteConfigure | Databases | Account
        ),
        TeamRole::Viewer => matches!(action, Read | Account),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_what_they_allow() {
        // Each role allows everything the one below it allows.
        let roles = [
            TeamRole::Viewer,
            TeamRole::Developer,
            TeamRole::Admin,
            TeamRole::Owner,
        ];
        for pair in roles.windows(2) {
            for a in Action::ALL {
                assert!(!allows(pair[0], a) || allows(pair[1], a), "{pair:?} {a:?}");
            }
        }
        assert!(!allows(TeamRole::Viewer, Action::ReadEnv));
        assert!(!allows(TeamRole::Developer, Action::ServerManage));
        assert!(!allows(TeamRole::Developer, Action::ReadCredentials));
        assert!(!allows(TeamRole::Admin, Action::Members));
        assert!(allows(TeamRole::Owner, Action::Members));
    }
}
