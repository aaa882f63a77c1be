//! The teams page: your teams with your role, their members (owners change roles, remove members, invite by
//! link, require two-factor sign-in), and the page an invitation link opens.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use brokeforge_core::TeamRole;
use brokeforge_domain::policy::{Action, allows};
use brokeforge_store::{Invitation, Member, Team};

use super::common::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;

pub struct TeamView {
    pub team: Team,
    pub role: TeamRole,
    pub manage: bool,
    pub members: Vec<Member>,
    pub invitations: Vec<Invitation>,
    /// The team's servers by id, to name the ones a member is narrowed to.
    pub server_names: BTreeMap<i64, String>,
}

impl TeamView {
    /// The servers a member is narrowed to, by name (empty: all of the team's).
    pub fn narrowed_to(&self, m: &Member) -> String {
        m.servers
            .iter()
            .filter_map(|id| self.server_names.get(id).cloned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Template)]
#[template(path = "teams.html")]
pub struct TeamsPage {
    pub nav: Nav,
    pub teams: Vec<TeamView>,
    /// A link just made (shown once).
    pub link: String,
    pub roles: [&'static str; 4],
}

async fn view(
    state: &AppState,
    u: &Authed,
    link: String,
    error: Option<&ApiError>,
    notice: &str,
) -> PageResult {
    let mut teams = Vec::new();
    for (team, role) in state.domain.teams(&u.user).await? {
        let manage = allows(role, Action::Members);
        let members = state.domain.team_members(&team).await?;
        let invitations = if manage {
            state
                .store
                .invitations(team.id)
                .await
                .map_err(brokeforge_domain::DomainError::from)?
                .into_iter()
                .filter(|i| i.accepted_at.is_none())
                .collect()
        } else {
            Vec::new()
        };
        let server_names = if manage {
            state
                .store
                .team_servers(team.id)
                .await
                .map_err(brokeforge_domain::DomainError::from)?
                .into_iter()
                .map(|s| (s.id, s.name))
                .collect()
        } else {
            BTreeMap::new()
        };
        teams.push(TeamView {
            server_names,
            team,
            role,
            manage,
            members,
            invitations,
        });
    }
    let mut nav = Nav::of(u, "Teams");
    nav.notice = notice.to_string();
    let status = match error {
        Some(e) => {
            nav = nav.with_error(e);
            e.status
        }
        None => StatusCode::OK,
    };
    Ok(render(
        &TeamsPage {
            nav,
            teams,
            link,
            roles: ["viewer", "developer", "admin", "owner"],
        },
        status,
    ))
}

pub async fn teams_page(State(state): State<AppState>, PageUser(u): PageUser) -> PageResult {
    view(&state, &u, String::new(), None, "").await
}

fn field(f: &BTreeMap<String, String>, k: &str) -> String {
    f.get(k).map(|v| v.trim().to_string()).unwrap_or_default()
}

/// One team form: `op` says which.
pub async fn team_action(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: axum::http::HeaderMap,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let team = field(&f, "team");
    let d = &state.domain;
    let result: Result<(String, String), brokeforge_domain::DomainError> = async {
        Ok(match field(&f, "op").as_str() {
            "create" => {
                let t = d.create_team(&u.user, &field(&f, "name")).await?;
                (String::new(), format!("Created team {}", t.name))
            }
            "invite" => {
                let inv = d
                    .invite(&u.user, &team, &field(&f, "email"), &field(&f, "role"))
                    .await?;
                let link = format!(
                    "{}{}",
                    state.base_url(&headers).unwrap_or_default(),
                    inv.path
                );
                let to = &inv.invitation.email;
                let notice = match d.email_invitation(&u.user, &inv, &link).await {
                    Some(Ok(())) => format!("Invited {to}: the link below went to them by email"),
                    Some(Err(e)) => format!(
                        "Invited {to}, but the email did not go out ({e}): send them the link below"
                    ),
                    None => format!("Invited {to}: send them the link below"),
                };
                (inv.path, notice)
            }
            "role" => {
                // The servers field: names, comma-separated; empty gives all of the team's servers.
                let servers: Vec<String> = field(&f, "servers")
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                d.set_member(
                    &u.user,
                    &team,
                    &field(&f, "email"),
                    &field(&f, "role"),
                    Some(&servers),
                )
                .await?;
                (String::new(), "Role changed".into())
            }
            "remove" => {
                d.remove_member(&u.user, &team, &field(&f, "email")).await?;
                (String::new(), "Member removed".into())
            }
            "two_factor" => {
                let on = field(&f, "require") == "on";
                d.set_team_two_factor(&u.user, &team, on).await?;
                (
                    String::new(),
                    format!(
                        "Two-factor sign-in is {}",
                        if on { "required" } else { "optional" }
                    ),
                )
            }
            _ => {
                return Err(brokeforge_domain::DomainError::invalid(
                    "op",
                    "unknown form",
                ));
            }
        })
    }
    .await;
    match result {
        Ok((path, notice)) => {
            let link = if path.is_empty() {
                String::new()
            } else {
                format!("{}{path}", state.base_url(&headers).unwrap_or_default())
            };
            view(&state, &u, link, None, &notice).await
        }
        Err(e) => view(&state, &u, String::new(), Some(&e.into()), "").await,
    }
}

#[derive(Template)]
#[template(path = "invitation.html")]
pub struct InvitationPage {
    pub nav: Nav,
    pub token: String,
    pub team: String,
    pub role: String,
    pub email: String,
    pub usable: bool,
}

pub async fn invitation_page(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(token): Path<String>,
) -> PageResult {
    let (inv, team) = state.domain.invitation(&token).await?;
    let usable = inv.accepted_at.is_none() && inv.expires_at > brokeforge_core::time::now_ms();
    Ok(render(
        &InvitationPage {
            nav: Nav::of(&u, "Invitation"),
            token,
            team: team.name,
            role: inv.role.to_string(),
            email: inv.email,
            usable,
        },
        StatusCode::OK,
    ))
}

pub async fn accept_invitation(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(token): Path<String>,
) -> PageResult {
    match state.domain.accept_invitation(&u.user, &token).await {
        Ok(team) => {
            view(
                &state,
                &u,
                String::new(),
                None,
                &format!("You joined {}", team.name),
            )
            .await
        }
        Err(e) => view(&state, &u, String::new(), Some(&e.into()), "").await,
    }
}
