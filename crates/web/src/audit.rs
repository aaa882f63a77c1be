//! The audit log's web side: every state-changing request to a route (page form, API call, deploy webhook)
//! is recorded after it is answered, with who (from the session or token), from where, the route, its ids
//! (never a token from the path, never the body) and the status; and the log itself, to read.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use brokeforge_domain::audit::Origin;
use brokeforge_store::NewAuditEntry;

use crate::auth::{self, Authed, Via, is_unsafe};
use crate::state::AppState;

pub fn origin(parts: &axum::http::request::Parts, trust_proxy: bool) -> Origin {
    Origin {
        ip: auth::client_address(parts, trust_proxy),
        user_agent: parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect())
            .unwrap_or_default(),
    }
}

/// The path with its ids, from the route template: `{token}`-like parts (anything not an id or a plain name)
/// stay as the template has them.
fn target_of(template: &str, path: &str) -> String {
    let actual: Vec<&str> = path.split('/').collect();
    template
        .split('/')
        .enumerate()
        .map(|(i, seg)| {
            let value = actual.get(i).copied().unwrap_or("");
            let plain = !value.is_empty()
                && value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if seg.starts_with('{') && seg != "{token}" && plain {
                value.to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The server a request concerns, from its path (servers, their sites and jobs), looked up before the handler
/// runs so that a deletion still names its server.
async fn server_of(state: &AppState, template: &str, path: &str) -> Option<i64> {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    let id_after = |name: &str| {
        t.iter()
            .position(|s| *s == name)
            .and_then(|i| p.get(i + 1))
            .and_then(|v| v.parse::<i64>().ok())
    };
    if let Some(id) = id_after("servers") {
        return Some(id);
    }
    if let Some(id) = id_after("sites") {
        return state.store.site(id).await.ok().map(|s| s.server_id);
    }
    if let Some(id) = id_after("jobs") {
        return state.store.job(id).await.ok().and_then(|j| j.server_id);
    }
    None
}

pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(template) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        return next.run(req).await;
    };
    // Sign-ins are recorded by the domain (their actor is the email given); servers' provisioning callbacks
    // are the onboarding's own record; metrics reports change no setting (and come every minute).
    if !is_unsafe(req.method())
        || template.ends_with("/login")
        || template.starts_with("/provision/")
        || template.starts_with("/ingest/")
    {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let server_id = server_of(&state, &template, &path).await;
    let from = origin(&parts, state.config.trust_proxy);
    let authed = parts.extensions.get::<Authed>().cloned();
    let action = format!(
        "{} {}",
        parts.method,
        template.strip_prefix("/api/v1").unwrap_or(&template)
    );
    let res = next.run(Request::from_parts(parts, body)).await;
    let actor = match &authed {
        Some(a) if a.via == Via::Token => format!("{} (API token)", a.user.email),
        Some(a) => a.user.email.clone(),
        None if template.starts_with("/hooks/") => "webhook".into(),
        None => "anonymous".into(),
    };
    state
        .domain
        .audit(NewAuditEntry {
            user_id: authed.map(|a| a.user.id),
            actor,
            ip: from.ip,
            user_agent: from.user_agent,
            action,
            target: target_of(&template, &path),
            server_id,
            status: res.status().as_u16() as i64,
            summary: String::new(),
        })
        .await;
    res
}

#[cfg(test)]
mod tests {
    #[test]
    fn targets_keep_ids_and_hide_tokens() {
        assert_eq!(
            super::target_of(
                "/hooks/sites/{site_id}/deploy/{token}",
                "/hooks/sites/7/deploy/abcdef0123"
            ),
            "/hooks/sites/7/deploy/{token}"
        );
        assert_eq!(
            super::target_of(
                "/api/v1/servers/{id}/services/{name}",
                "/api/v1/servers/3/services/redis"
            ),
            "/api/v1/servers/3/services/redis"
        );
        assert_eq!(
            super::target_of("/servers/{id}", "/servers/%2e%2e"),
            "/servers/{id}"
        );
    }
}
