//! Teams, members and invitations.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::json;

use super::common::{ApiJson, ApiResponse, Body, created};
use crate::auth::Authed;
use crate::extract::OwnedTeam;
use crate::state::AppState;

fn team_json(t: &brokeforge_store::Team, role: brokeforge_core::TeamRole) -> serde_json::Value {
    json!({"id": t.id, "name": t.name, "personal": t.personal_of.is_some(),
           "require_two_factor": t.require_two_factor, "role": role, "created_at": t.created_at})
}

pub async fn list(State(state): State<AppState>, authed: Authed) -> ApiJson {
    let teams = state.domain.teams(&authed.user).await?;
    Ok(Json(json!({
        "teams": teams.iter().map(|(t, r)| team_json(t, *r)).collect::<Vec<_>>()
    })))
}

#[derive(Deserialize)]
pub struct NewTeam {
    pub name: String,
}

pub async fn create(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<NewTeam>,
) -> ApiResponse {
    let t = state.domain.create_team(&authed.user, &b.name).await?;
    Ok(created(
        json!({"team": team_json(&t, brokeforge_core::TeamRole::Owner)}),
    ))
}

pub async fn members(
    State(state): State<AppState>,
    OwnedTeam(_, team, role): OwnedTeam,
) -> ApiJson {
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
    Ok(Json(json!({
        "team": team_json(&team, role),
        "members": members,
        "invitations": invitations,
    })))
}

#[derive(Deserialize)]
pub struct Invite {
    pub email: String,
    pub role: String,
}

pub async fn invite(
    State(state): State<AppState>,
    OwnedTeam(authed, team, _): OwnedTeam,
    headers: axum::http::HeaderMap,
    Body(b): Body<Invite>,
) -> ApiResponse {
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
    Ok(created(json!({
        "invitation": inv.invitation,
        "path": inv.path,
        "emailed": emailed,
        "email_error": email_error,
    })))
}

#[derive(Deserialize)]
pub struct SetRole {
    pub email: String,
    pub role: String,
    /// The team's servers (by name) the member is narrowed to; `[]`: all of them; absent: unchanged.
    #[serde(default)]
    pub servers: Option<Vec<String>>,
}

pub async fn set_role(
    State(state): State<AppState>,
    OwnedTeam(authed, team, _): OwnedTeam,
    Body(b): Body<SetRole>,
) -> ApiJson {
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
    Ok(Json(json!({"ok": true})))
}

pub async fn remove_member(
    State(state): State<AppState>,
    OwnedTeam(authed, team, _): OwnedTeam,
    Path((_, email)): Path<(i64, String)>,
) -> ApiJson {
    state
        .domain
        .remove_member(&authed.user, &team.id.to_string(), &email)
        .await?;
    Ok(Json(json!({"ok": true})))
}

pub async fn leave(
    State(state): State<AppState>,
    OwnedTeam(authed, team, _): OwnedTeam,
) -> ApiJson {
    let email = authed.user.email.clone();
    state
        .domain
        .remove_member(&authed.user, &team.id.to_string(), &email)
        .await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
pub struct TeamSettings {
    pub require_two_factor: bool,
}

pub async fn settings(
    State(state): State<AppState>,
    OwnedTeam(authed, team, _): OwnedTeam,
    Body(b): Body<TeamSettings>,
) -> ApiJson {
    let t = state
        .domain
        .set_team_two_factor(&authed.user, &team.id.to_string(), b.require_two_factor)
        .await?;
    Ok(Json(json!({"team": t})))
}

pub async fn show_invitation(
    State(state): State<AppState>,
    _authed: Authed,
    Path(token): Path<String>,
) -> ApiJson {
    let (inv, team) = state.domain.invitation(&token).await?;
    Ok(Json(
        json!({"invitation": inv, "team": {"id": team.id, "name": team.name}}),
    ))
}

pub async fn accept_invitation(
    State(state): State<AppState>,
    authed: Authed,
    Path(token): Path<String>,
) -> ApiJson {
    let team = state.domain.accept_invitation(&authed.user, &token).await?;
    Ok(Json(json!({"team": {"id": team.id, "name": team.name}})))
}
