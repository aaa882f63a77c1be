//! Teams: create them, invite people by link (single use, expiring, bound to an email, never granting more
//! than the inviter has), change roles, remove members, require two-factor sign-in. What a role may do is
//! decided by [`crate::policy`].

use brokeforge_core::time::now_ms;
use brokeforge_core::{TeamRole, ValidationError, validate};
use brokeforge_store::{Invitation, Member, Server, Team, User};

use crate::policy::{Action, allows};
use crate::{Domain, DomainError, DomainResult};

/// How long an invitation link works.
pub const INVITATION_DAYS: i64 = 7;

/// An invitation just made: the record and the secret link path (shown once; only its hash is kept).
#[derive(Debug)]
pub struct NewInvitation {
    pub invitation: Invitation,
    pub path: String,
}

fn team_name(name: &str) -> Result<String, ValidationError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "name",
            "1 to 64 characters, no control characters",
        ));
    }
    Ok(n.to_string())
}

pub fn parse_role(value: &str) -> Result<TeamRole, ValidationError> {
    value
        .trim()
        .parse()
        .map_err(|_| ValidationError::new("role", "owner, admin, developer or viewer"))
}

impl Domain {
    pub async fn create_team(&self, user: &User, name: &str) -> DomainResult<Team> {
        let name = team_name(name)?;
        if self
            .store
            .teams_of(user.id)
            .await?
            .iter()
            .any(|(t, _)| t.personal_of.is_none() && t.name.eq_ignore_ascii_case(&name))
        {
            return Err(DomainError::conflict(
                "team_exists",
                format!("you are already in a team named {name}"),
            ));
        }
        Ok(self.store.create_team(&name, user.id).await?)
    }

    pub async fn teams(&self, user: &User) -> DomainResult<Vec<(Team, TeamRole)>> {
        Ok(self.store.teams_of(user.id).await?)
    }

    /// A team of the user's by id or name, if their role allows `action` there: another team answers
    /// "not found", an action the role does not allow "forbidden".
    pub async fn team_for(
        &self,
        user: &User,
        team: &str,
        action: Action,
    ) -> DomainResult<(Team, TeamRole)> {
        let team = team.trim();
        let teams = self.store.teams_of(user.id).await?;
        let found = teams
            .into_iter()
            .find(|(t, _)| t.id.to_string() == team || t.name == team)
            .ok_or(DomainError::NotFound)?;
        if !allows(found.1, action) {
            return Err(DomainError::Forbidden(format!(
                "your role in {} ({}) may not {}",
                found.0.name,
                found.1,
                action.describe()
            )));
        }
        Ok(found)
    }

    pub async fn team_members(&self, team: &Team) -> DomainResult<Vec<Member>> {
        Ok(self.store.team_members(team.id).await?)
    }

    /// Invite `email` into `team` as `role`: the inviter must manage members there and hold at least that
    /// role. The link is returned once.
    pub async fn invite(
        &self,
        user: &User,
        team: &str,
        email: &str,
        role: &str,
    ) -> DomainResult<NewInvitation> {
        let (team, my_role) = self.team_for(user, team, Action::Members).await?;
        let email = validate::email(email)?.to_ascii_lowercase();
        let role = parse_role(role)?;
        if team.personal_of.is_some() {
            return Err(DomainError::conflict(
                "personal_team",
                "a personal team has no other members: create a team and invite people there",
            ));
        }
        if role.rank() > my_role.rank() {
            return Err(DomainError::Forbidden(format!(
                "you are {my_role} in {}: you cannot invite an {role}",
                team.name
            )));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| DomainError::Internal(e.to_string()))?;
        let token = hex::encode(raw);
        let invitation = self
            .store
            .create_invitation(
                team.id,
                &email,
                role,
                &crate::accounts::sha256_hex(&token),
                user.id,
                now_ms() + INVITATION_DAYS * 86_400_000,
            )
            .await?;
        Ok(NewInvitation {
            invitation,
            path: format!("/invitations/{token}"),
        })
    }

    /// Send an invitation's link to the invited address when the operator configured a mail relay
    /// (`BROKEFORGE_SMTP_URL`). `None`: no relay (the inviter passes the link on); else whether it went.
    pub async fn email_invitation(
        &self,
        inviter: &User,
        inv: &NewInvitation,
        link: &str,
    ) -> Option<Result<(), String>> {
        let smtp = self.smtp.as_ref()?;
        let team = match self.store.team(inv.invitation.team_id).await {
            Ok(t) => t,
            Err(e) => return Some(Err(e.to_string())),
        };
        let body = format!(
            "{inviter} invites you to the team {team} on BrokeForge, as {role}.\n\n\
             Open this link, signed in as {to} (an administrator makes the account if you have none), to accept:\n{link}\n\n\
             It works once, for this address only, for {days} days. If you did not expect it, ignore this mail.\n",
            inviter = inviter.email,
            team = team.name,
            role = inv.invitation.role,
            to = inv.invitation.email,
            days = INVITATION_DAYS,
        );
        Some(
            smtp.send(
                &inv.invitation.email,
                &format!(
                    "[BrokeForge] {} invites you to {}",
                    inviter.email, team.name
                ),
                &body,
            )
            .await,
        )
    }

    /// What invitation `token` offers (for the page that asks to accept it).
    pub async fn invitation(&self, token: &str) -> DomainResult<(Invitation, Team)> {
        let inv = self
            .store
            .invitation_by_hash(&crate::accounts::sha256_hex(token.trim()))
            .await?
            .ok_or(DomainError::NotFound)?;
        let team = self.store.team(inv.team_id).await?;
        Ok((inv, team))
    }

    /// Accept invitation `token` as `user`: only the invited email, once, before it expires, and only while
    /// the inviter still holds at least the role it grants.
    pub async fn accept_invitation(&self, user: &User, token: &str) -> DomainResult<Team> {
        let (inv, team) = self.invitation(token).await?;
        if inv.accepted_at.is_some() {
            return Err(DomainError::conflict(
                "invitation_used",
                "this invitation was already used",
            ));
        }
        if inv.expires_at <= now_ms() {
            return Err(DomainError::conflict(
                "invitation_expired",
                "this invitation has expired: ask for a new one",
            ));
        }
        if !inv.email.eq_ignore_ascii_case(&user.email) {
            return Err(DomainError::Forbidden(format!(
                "this invitation is for another email address; you are signed in as {}",
                user.email
            )));
        }
        let inviter_role = match inv.invited_by {
            Some(by) => self
                .store
                .teams_of(by)
                .await?
                .into_iter()
                .find(|(t, _)| t.id == team.id)
                .map(|(_, r)| r),
            None => None,
        };
        if !inviter_role.is_some_and(|r| allows(r, Action::Members) && r.rank() >= inv.role.rank())
        {
            return Err(DomainError::Forbidden(
                "whoever invited you can no longer grant this role: ask a team owner for a new invitation".into(),
            ));
        }
        if !self.store.accept_invitation(inv.id, user.id).await? {
            return Err(DomainError::conflict(
                "invitation_used",
                "this invitation was already used or has expired",
            ));
        }
        Ok(team)
    }

    /// Change a member's role. The team keeps at least one owner.
    pub async fn set_member_role(
        &self,
        user: &User,
        team: &str,
        member_email: &str,
        role: &str,
    ) -> DomainResult<()> {
        self.set_member(user, team, member_email, role, None).await
    }

    /// Change a member's role and, when `servers` is given, the team's servers (by name) they are narrowed
    /// to: none listed gives them all of the team's again. Owners manage the team and are never narrowed.
    pub async fn set_member(
        &self,
        user: &User,
        team: &str,
        member_email: &str,
        role: &str,
        servers: Option<&[String]>,
    ) -> DomainResult<()> {
        let (team, _) = self.team_for(user, team, Action::Members).await?;
        let role = parse_role(role)?;
        let narrowed = match servers {
            None => None,
            Some(names) => {
                if role == TeamRole::Owner && !names.is_empty() {
                    return Err(DomainError::invalid(
                        "servers",
                        "an owner manages the whole team and is not narrowed to servers",
                    ));
                }
                let team_servers = self.store.team_servers(team.id).await?;
                let mut ids = Vec::new();
                for name in names {
                    let s = team_servers
                        .iter()
                        .find(|s| s.name == name.trim())
                        .ok_or_else(|| {
                            DomainError::invalid(
                                "servers",
                                format!("{} has no server named `{name}`", team.name),
                            )
                        })?;
                    ids.push(s.id);
                }
                Some(ids)
            }
        };
        let members = self.store.team_members(team.id).await?;
        let m = members
            .iter()
            .find(|m| m.email.eq_ignore_ascii_case(member_email.trim()))
            .ok_or_else(|| {
                DomainError::invalid(
                    "member",
                    format!("{member_email} is not a member of {}", team.name),
                )
            })?;
        let owners = members.iter().filter(|m| m.role == TeamRole::Owner).count();
        if m.role == TeamRole::Owner && role != TeamRole::Owner && owners == 1 {
            return Err(DomainError::conflict(
                "last_owner",
                "a team keeps at least one owner: make someone else owner first",
            ));
        }
        // An owner made from a narrowed member sees the whole team again.
        let narrowed = match (role, narrowed) {
            (TeamRole::Owner, _) => Some(Vec::new()),
            (_, n) => n,
        };
        self.store
            .put_member(team.id, m.user_id, role, narrowed.as_deref())
            .await?;
        // Keys the member may no longer have there leave: on servers they were narrowed away from, and
        // root's keys when the role no longer allows root-level changes.
        let keep_on: Option<Vec<i64>> = match &narrowed {
            Some(ids) if !ids.is_empty() => Some(ids.clone()),
            Some(_) => None,
            None => {
                let now = self.store.team_members(team.id).await?;
                now.iter()
                    .find(|x| x.user_id == m.user_id)
                    .map(|x| x.servers.clone())
                    .filter(|s| !s.is_empty())
            }
        };
        let root_ok = crate::policy::allows(role, Action::ServerManage);
        let mut off = Vec::new();
        for d in self.store.key_deployments(None, Some(m.user_id)).await? {
            if d.status == "removing" || self.store.server(d.server_id).await?.team_id != team.id {
                continue;
            }
            let narrowed_away = keep_on
                .as_ref()
                .is_some_and(|ids| !ids.contains(&d.server_id));
            if narrowed_away || (d.unix_user == "root" && !root_ok) {
                off.push(d);
            }
        }
        self.queue_key_removals(&off).await?;
        Ok(())
    }

    /// Take a member out of a team (or leave it yourself). The team keeps at least one owner.
    pub async fn remove_member(
        &self,
        user: &User,
        team: &str,
        member_email: &str,
    ) -> DomainResult<()> {
        let leaving = member_email.trim().eq_ignore_ascii_case(&user.email);
        let (team, _) = if leaving {
            self.team_for(user, team, Action::Read).await?
        } else {
            self.team_for(user, team, Action::Members).await?
        };
        if team.personal_of.is_some() {
            return Err(DomainError::conflict(
                "personal_team",
                "nobody leaves their personal team",
            ));
        }
        let members = self.store.team_members(team.id).await?;
        let m = members
            .iter()
            .find(|m| m.email.eq_ignore_ascii_case(member_email.trim()))
            .ok_or_else(|| {
                DomainError::invalid(
                    "member",
                    format!("{member_email} is not a member of {}", team.name),
                )
            })?;
        let owners = members.iter().filter(|m| m.role == TeamRole::Owner).count();
        if m.role == TeamRole::Owner && owners == 1 {
            return Err(DomainError::conflict(
                "last_owner",
                "a team keeps at least one owner: make someone else owner first",
            ));
        }
        self.store.remove_member(team.id, m.user_id).await?;
        // Their keys leave the team's servers.
        let mut on = Vec::new();
        for d in self.store.key_deployments(None, Some(m.user_id)).await? {
            if self.store.server(d.server_id).await?.team_id == team.id {
                on.push(d);
            }
        }
        self.queue_key_removals(&on).await?;
        Ok(())
    }

    /// Move `server` into `team` (the caller may remove it where it is, checked by the route, and make
    /// root-level changes in the target team). Personal SSH keys of people the new team does not give that
    /// reach (not members, narrowed to other servers, or root keys without the role for them) leave it.
    pub async fn move_server(
        &self,
        user: &User,
        server: &Server,
        team: &str,
    ) -> DomainResult<Server> {
        let (target, _) = self.team_for(user, team, Action::ServerManage).await?;
        if target.id == server.team_id {
            return Err(DomainError::invalid(
                "team",
                format!("{} is in {} already", server.name, target.name),
            ));
        }
        if self
            .store
            .team_servers(target.id)
            .await?
            .iter()
            .any(|s| s.name == server.name)
        {
            return Err(DomainError::conflict(
                "name_taken",
                format!(
                    "{} has a server named `{}` already: rename one first",
                    target.name, server.name
                ),
            ));
        }
        if !self
            .store
            .move_server(server.id, server.team_id, target.id)
            .await?
        {
            return Err(DomainError::conflict(
                "moved",
                "the server changed teams meanwhile: reload and try again",
            ));
        }
        let members = self.store.team_members(target.id).await?;
        let mut off = Vec::new();
        for d in self.store.key_deployments(Some(server.id), None).await? {
            if d.status == "removing" {
                continue;
            }
            let keeps = members.iter().any(|m| {
                m.user_id == d.user_id
                    && (m.servers.is_empty() || m.servers.contains(&server.id))
                    && (d.unix_user != "root" || allows(m.role, Action::ServerManage))
            });
            if !keeps {
                off.push(d);
            }
        }
        self.queue_key_removals(&off).await?;
        Ok(self.store.server(server.id).await?)
    }

    /// Require (or stop requiring) two-factor sign-in of the team's members.
    pub async fn set_team_two_factor(
        &self,
        user: &User,
        team: &str,
        required: bool,
    ) -> DomainResult<Team> {
        let (team, _) = self.team_for(user, team, Action::Members).await?;
        self.store.set_team_two_factor(team.id, required).await?;
        Ok(self.store.team(team.id).await?)
    }
}
