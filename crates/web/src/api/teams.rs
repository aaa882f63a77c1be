//! Teams, members and invitations.

use axum::Json;
use axum::extract::{Path, State};
use brokeforge_core::TeamRole;

use super::common::{Body, Created, Typed};
use super::types::{
    Done, InvitationCreated, InvitationView, Invite, JoinedTeam, NewTeam, SetRole, TeamEntry,
    TeamList, TeamMembers, TeamRef, TeamResponse, TeamSettings,
};
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedTeam;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, authed: Authed) -> Typed<TeamList> {
    let teams = state.domain.teams(&authed.user).await?;
    Ok(Json(TeamList {
        teams: teams.iter().map(|(t, r)| TeamEntry::of(t, *r)).collect(),
    }))
}

pub async fn create(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<NewTeam>,
) -> Result<Created<TeamResponse>, ApiError> {
    let t = state.domain.create_team(&authed.user, &b.name).await?;
    Ok(Created(TeamResponse {
        team: TeamEntry::of(&t, TeamRole::Owner),
    }))
}

pub async fn members(
    State(state): State<AppState>,
    OwnedTeam(_, team, role): OwnedTeam,
) -> Typed<TeamMembers> {
    let members = state.domain.team_members(&team).await?;
    let invitations =
        if brokeforge_domain::policy::allows(role, brokeforge_domain::policy::Action::Members) {
            state
                .store
                .invitations(team.id)
                .await
                .map_err(brokeforge_domain::DomainError::from)?
        } else {
            Vec::new()
        };
    Ok(Json(TeamMembers {
        team: TeamEntry::of(&team, role),
        members,
        invitations,
    }))
}

pub async fn invite(
    State(state): State<AppState>,
    OwnedTeam(authed, team, _): OwnedTeam,
    headers: axum::http::HeaderMap,
    Body(b): Body<Invite>,
) -> Result<Created<InvitationCreated>, ApiError> {
    let inv = state
        .domain
        .invite(&authed.user, &team.id.to_string(), &b.email, &b.role)
        .await?;
    // Mailed when a relay is configured; the link is answered either way (the caller may pass it on).
    let (emailed, email_error) = match state.base_url(&headers) {
        Some(base) => match state
            .domain
            .email_invitation(&authed.user, &inv, &format!("{base}{}", inv.path))
            .await
        {
            Some(Ok(())) => (true, None),
            Some(Err(e)) => (false, Some(e)),
            None => (false, None),
        },
        None => (false, None),
    };
    Ok(Created(InvitationCreated {
        invitation: inv.invitation,
        path: inv.path,
        emailed,
        email_error,
    }))
}

pub async fn set_role(
    State(state): State<AppState>,
    OwnedTeam(authed, team, _): OwnedTeam,
    Body(b): Body<SetRole>,
) -> Typed<Done> {
    state
        .domain
        .set_member(
            &authed.user,
            &team.id.to_string(),
            &b.email,
            &b.role,
            b.servers.as_deref(),
        )
        .await?;
    Ok(Json(Done::ok()))
}

pub async fn remove_member(
    State(state): State<AppState>,
    OwnedTeam(authed, team, _): OwnedTeam,
    Path((_, email)): Path<(i64, String)>,
) -> Typed<Done> {
    state
        .domain
        .remove_member(&authed.user, &team.id.to_string(), &email)
        .await?;
    Ok(Json(Done::ok()))
}

pub async fn leave(
    State(state): State<AppState>,
    OwnedTeam(authed, team, _): OwnedTeam,
) -> Typed<Done> {
    let email = authed.user.email.clone();
    state
        .domain
        .remove_member(&authed.user, &team.id.to_string(), &email)
        .await?;
    Ok(Json(Done::ok()))
}

pub async fn settings(
    State(state): State<AppState>,
    OwnedTeam(authed, team, role): OwnedTeam,
    Body(b): Body<TeamSettings>,
) -> Typed<TeamResponse> {
    let t = state
        .domain
        .set_team_two_factor(&authed.user, &team.id.to_string(), b.require_two_factor)
        .await?;
    Ok(Json(TeamResponse {
        team: TeamEntry::of(&t, role),
    }))
}

pub async fn show_invitation(
    State(state): State<AppState>,
    _authed: Authed,
    Path(token): Path<String>,
) -> Typed<InvitationView> {
    let (invitation, team) = state.domain.invitation(&token).await?;
    Ok(Json(InvitationView {
        invitation,
        team: TeamRef {
            id: team.id,
            name: team.name,
        },
    }))
}

pub async fn accept_invitation(
    State(state): State<AppState>,
    authed: Authed,
    Path(token): Path<String>,
) -> Typed<JoinedTeam> {
    let team = state.domain.accept_invitation(&authed.user, &token).await?;
    Ok(Json(JoinedTeam {
        team: TeamRef {
            id: team.id,
            name: team.name,
        },
    }))
}
