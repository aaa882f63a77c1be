//! Who is asking, as HTTP carries it: the session cookie (with its CSRF token) or a bearer API token; the
//! accounts themselves (passwords, throttling, tokens) are the domain's.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use brokeforge_domain::Domain;
use brokeforge_domain::policy::Action;
use brokeforge_store::User;

use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "bf_session";
/// The sign-in and setup forms' token before there is a session (double submit: cookie and form field).
pub const PRESESSION_COOKIE: &str = "bf_presession";
/// Sessions last a week.
use brokeforge_domain::accounts::{SESSION_TTL_MS, sha256_hex};

pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        SESSION_TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// The pre-session cookie for the sign-in and setup forms: strict, an hour.
pub fn presession_cookie(token: &str, secure: bool) -> String {
    format!(
        "{PRESESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether a request carries a session cookie (before it is checked).
pub fn cookie_header_has_session(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(SESSION_COOKIE))
}

pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Session,
    Token,
}

/// The signed-in user of a request: from a bearer token or the session cookie.
#[derive(Debug, Clone)]
pub struct Authed {
    pub user: User,
    pub via: Via,
    /// What a bearer token may do (a session may do everything its user may).
    pub scope: brokeforge_store::TokenScope,
    /// The session's CSRF token (empty for bearer tokens).
    pub csrf: String,
    pub session_hash: Option<String>,
    /// The user's teams (id, name; "personal" for their own), for the header's team switch; sessions only.
    pub teams: Vec<(i64, String)>,
}

pub async fn authenticate(domain: &Domain, parts: &Parts) -> Result<Option<Authed>, ApiError> {
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?
            .trim();
        let (user, scope) = domain.token_auth(token).await.map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                e.to_string(),
            )
        })?;
        return Ok(Some(Authed {
            user,
            via: Via::Token,
            scope,
            csrf: String::new(),
            session_hash: None,
            teams: Vec::new(),
        }));
    }
    if let Some(token) = cookie(parts, SESSION_COOKIE)
        && let Some(s) = domain.session(token).await?
    {
        let teams = domain
            .teams(&s.user)
            .await?
            .into_iter()
            .map(|(t, _)| {
                let name = if t.personal_of.is_some() {
                    "personal".to_string()
                } else {
                    t.name
                };
                (t.id, name)
            })
            .collect();
        return Ok(Some(Authed {
            teams,
            user: s.user,
            via: Via::Session,
            scope: brokeforge_store::TokenScope::Full,
            csrf: s.csrf_token,
            session_hash: Some(sha256_hex(token)),
        }));
    }
    Ok(None)
}

/// Unsafe methods with a session cookie must carry the session's CSRF token (header `X-CSRF-Token`, or the
/// `_csrf` form field checked by the page handlers) and, when the browser sends one, a same-origin `Origin`.
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A request a browser made from another site: `Sec-Fetch-Site` says so (browsers send it on every request;
/// `same-origin` and `none`, a typed address or a bookmark, are ours), or the `Origin` is not this host.
/// Programs (the CLI, curl, git hosts' webhooks) send neither and are judged by their credentials.
pub fn cross_site(parts: &Parts) -> bool {
    let fetch_site = parts
        .headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    if let Some(site) = fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return true;
    }
    !same_origin(parts)
}

pub fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .map(|(_, h)| h == host)
        .unwrap_or(false)
}

pub fn csrf_matches(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty()
        && expected.len() == given.len()
        && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

impl<S> FromRequestParts<S> for Authed
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// Set by [`crate::authenticate_layer`], which also checked CSRF for session requests.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Authed>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The client's address for throttling: the socket's peer, or, when the operator says BrokeForge sits behind
/// a proxy, the address that proxy saw: the right-most `X-Forwarded-For` entry (the ones left of it are
/// whatever the client claimed).
pub fn client_address(parts: &Parts, trust_proxy: bool) -> String {
    if trust_proxy
        && let Some(f) = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .next_back()
        && let Some(hop) = f.rsplit(',').map(str::trim).find(|h| !h.is_empty())
    {
        return hop.chars().take(64).collect();
    }
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The policy action of API route `route` (the matched template) with `method`, from the route table.
pub fn route_action(method: &axum::http::Method, route: &str) -> Option<Action> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static TABLE: OnceLock<HashMap<(String, String), Action>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        crate::api::operations()
            .into_iter()
            .map(|op| {
                (
                    (
                        op.method.to_ascii_uppercase(),
                        format!("/api/v1{}", op.path),
                    ),
                    op.action,
                )
            })
            .collect()
    });
    table
        .get(&(method.as_str().to_string(), route.to_string()))
        .copied()
}

/// Whether a token of `scope` may call `route` (the matched route template) with `method`. Decided by the
/// route's policy action: secrets need a full token; a deploy token may also deploy and run site commands.
pub fn scope_allows(
    scope: brokeforge_store::TokenScope,
    method: &axum::http::Method,
    route: &str,
) -> Result<(), ApiError> {
    use brokeforge_store::TokenScope;
    if scope == TokenScope::Full {
        return Ok(());
    }
    let action = route_action(method, route);
    if matches!(action, Some(Action::ReadEnv | Action::ReadCredentials)) {
        return Err(ApiError::forbidden(format!(
            "this {} token cannot read secrets: use a token of full scope",
            scope.as_str()
        )));
    }
    let deploys =
        matches!(action, Some(Action::Deploy | Action::SiteCommand)) || route == "/api/v1/logout";
    if !is_unsafe(method) || (scope == TokenScope::Deploy && deploys) {
        return Ok(());
    }
    Err(ApiError::forbidden(match scope {
        TokenScope::Read => "this token is read-only".to_string(),
        _ => "this deploy token may deploy, roll back, run site commands and cancel or retry jobs only".to_string(),
    }))
}
