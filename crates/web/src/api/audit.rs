//! The audit log, newest first: administrators see everything, others their own actions and what happened
//! on their servers. There is no route that changes it.

use axum::Json;
use axum::extract::{Query, State};
use brokeforge_store::AuditFilter;

use super::common::{Page, Typed};
use super::types::{AuditPage, AuditQuery};
use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    authed: Authed,
    Query(q): Query<AuditQuery>,
) -> Typed<AuditPage> {
    let page = Page::of(q.cursor.as_deref(), q.limit)?;
    let user_id = match q.user.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        None => None,
        Some(email) => Some(
            state
                .store
                .user_by_email(email)
                .await?
                .ok_or_else(|| ApiError::invalid("user", format!("no user {email}")))?
                .id,
        ),
    };
    let entries = state
        .domain
        .audit_log(
            &authed.user,
            AuditFilter {
                user_id,
                server_id: q.server,
                team_id: q.team,
                action: q.action.filter(|a| !a.trim().is_empty()),
                since: q.since,
                before: page.cursor,
                limit: page.limit,
                ..AuditFilter::default()
            },
        )
        .await?;
    let next_cursor = page.next_cursor(entries.len(), entries.last().map(|e| e.id));
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    }))
}
