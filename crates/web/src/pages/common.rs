//! What every page shares: the layout's navigation, rendering, the error page, the signed-in user.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use brokeforge_core::time::now_ms;
use brokeforge_store::{Server, ServerSite};

use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;

/// What the layout needs.
#[derive(Default)]
pub struct Nav {
    pub title: String,
    pub signed_in: bool,
    pub email: String,
    pub is_admin: bool,
    pub csrf: String,
    pub error: String,
    pub notice: String,
    /// The user's teams, for the header's switch (shown with two or more).
    pub teams: Vec<(i64, String)>,
    /// The workspace area shown ("" outside a server's or a site's workspace), and its tabs.
    pub area: &'static str,
    pub tabs: Vec<Tab>,
}

/// One tab of a workspace's navigation.
pub struct Tab {
    pub href: String,
    pub label: &'static str,
    pub current: bool,
}

/// A server's workspace areas: (area, path under /servers/{id}, tab label). Each is a page of its own.
pub const SERVER_AREAS: &[(&str, &str, &str)] = &[
    ("overview", "", "Overview"),
    ("sites", "/sites", "Sites"),
    ("databases", "/databases", "Databases"),
    ("services", "/services", "Services"),
    ("php", "/php", "PHP"),
    ("backups", "/backups", "Backups"),
    ("monitoring", "/monitoring", "Monitoring"),
    ("firewall", "/firewall", "Firewall"),
    ("logs", "/logs", "Logs"),
    ("drift", "/drift", "Drift"),
    ("activity", "/activity", "Activity"),
    ("settings", "/settings", "Settings"),
];

/// A site's workspace areas: (area, path under /sites/{id}, tab label); its logs are the server's, filtered.
pub const SITE_AREAS: &[(&str, &str, &str)] = &[
    ("overview", "", "Overview"),
    ("deployments", "/deployments", "Deployments"),
    ("environment", "/environment", "Environment"),
    ("commands", "/commands", "Commands"),
    ("tasks", "/tasks", "Scheduled and daemons"),
    ("https", "/https", "HTTPS"),
    ("health", "/health", "Health"),
    ("logs", "", "Logs"),
];

fn tabs(areas: &[(&'static str, &str, &'static str)], base: &str, area: &str) -> Vec<Tab> {
    areas
        .iter()
        .map(|(a, path, label)| Tab {
            href: format!("{base}{path}"),
            label,
            current: *a == area,
        })
        .collect()
}

impl Nav {
    pub fn of(u: &Authed, title: impl Into<String>) -> Nav {
        Nav {
            title: title.into(),
            signed_in: true,
            email: u.user.email.clone(),
            is_admin: u.user.is_admin,
            csrf: u.csrf.clone(),
            teams: u.teams.clone(),
            ..Nav::default()
        }
    }
    /// A page of a server's workspace: its area's tab is the current one.
    pub fn server(u: &Authed, server: &Server, area: &'static str) -> Nav {
        let label = SERVER_AREAS
            .iter()
            .find(|(a, ..)| *a == area)
            .map_or("", |(.., l)| *l);
        Nav {
            area,
            tabs: tabs(SERVER_AREAS, &format!("/servers/{}", server.id), area),
            ..Nav::of(u, format!("{label} · {}", server.name))
        }
    }

    /// A page of a site's workspace.
    pub fn site(u: &Authed, site: &ServerSite, area: &'static str) -> Nav {
        let label = SITE_AREAS
            .iter()
            .find(|(a, ..)| *a == area)
            .map_or("", |(.., l)| *l);
        let mut tabs = tabs(SITE_AREAS, &format!("/sites/{}", site.id), area);
        if let Some(logs) = tabs.iter_mut().find(|t| t.label == "Logs") {
            // Domains are validated host names: nothing in them needs escaping in a query.
            logs.href = format!("/servers/{}/logs?site={}", site.server_id, site.domain);
        }
        Nav {
            area,
            tabs,
            ..Nav::of(u, format!("{label} · {}", site.domain))
        }
    }

    /// The page after a form: its error shown, and the status to answer with (the error's, or 200).
    pub fn with_result(self, error: Option<&ApiError>) -> (Nav, axum::http::StatusCode) {
        match error {
            Some(e) => (self.with_error(e), e.status),
            None => (self, axum::http::StatusCode::OK),
        }
    }

    pub fn with_error(mut self, e: &ApiError) -> Nav {
        self.error = match e.field {
            Some(f) => format!("{f}: {}", e.message),
            None => e.message.clone(),
        };
        self
    }
}

pub fn render(t: &impl Template, status: StatusCode) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub nav: Nav,
    pub heading: String,
    pub message: String,
}

/// A page-level error: a clear page, with the status the API would give.
pub struct PageError(pub ApiError, pub Option<Box<Authed>>);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e, None)
    }
}

impl From<brokeforge_domain::DomainError> for PageError {
    fn from(e: brokeforge_domain::DomainError) -> Self {
        PageError(e.into(), None)
    }
}

impl PageError {
    /// An error page for a signed-in user (the layout keeps their navigation).
    pub fn with_user(e: ApiError, u: &Authed) -> PageError {
        PageError(e, Some(Box::new(u.clone())))
    }
}

impl From<brokeforge_store::StoreError> for PageError {
    fn from(e: brokeforge_store::StoreError) -> Self {
        PageError(e.into(), None)
    }
}

impl From<brokeforge_packages::PackageError> for PageError {
    fn from(e: brokeforge_packages::PackageError) -> Self {
        PageError(e.into(), None)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let heading = match self.0.status {
            StatusCode::NOT_FOUND => "Not found".to_string(),
            StatusCode::FORBIDDEN => "Not allowed".to_string(),
            s if s.is_server_error() => "Something went wrong".to_string(),
            _ => "That did not work".to_string(),
        };
        let message = if self.0.status == StatusCode::NOT_FOUND {
            "There is nothing here, or it belongs to someone else.".to_string()
        } else {
            self.0.message.clone()
        };
        let nav = match &self.1 {
            Some(a) => Nav::of(a, heading.clone()),
            None => Nav {
                title: heading.clone(),
                ..Nav::default()
            },
        };
        render(
            &MessagePage {
                nav,
                heading,
                message,
            },
            self.0.status,
        )
    }
}

pub type PageResult = Result<Response, PageError>;

/// A package form's `set.NAME` fields (empty ones left to the package's defaults).
pub fn set_fields(f: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    f.iter()
        .filter_map(|(k, v)| k.strip_prefix("set.").map(|k| (k.to_string(), v.clone())))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// After a server form: back to the server page, or the page again with the error.
pub async fn page_server(
    state: &AppState,
    u: &Authed,
    id: i64,
    action: brokeforge_domain::policy::Action,
) -> Result<Server, PageError> {
    state
        .domain
        .owned_server(&u.user, id, action)
        .await
        .map_err(|e| PageError(e.into(), Some(Box::new(u.clone()))))
}

/// The user's own site (with its server), or the "not found" page.
pub async fn page_site(
    state: &AppState,
    u: &Authed,
    id: i64,
    action: brokeforge_domain::policy::Action,
) -> Result<(ServerSite, Server), PageError> {
    state
        .domain
        .owned_site(&u.user, id, action)
        .await
        .map_err(|e| PageError(e.into(), Some(Box::new(u.clone()))))
}

/// The signed-in user of a page; anyone else goes to the login page (or to setup on a new install).
pub struct PageUser(pub Authed);

impl<S: Send + Sync> FromRequestParts<S> for PageUser {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _s: &S) -> Result<Self, Response> {
        match parts.extensions.get::<Authed>() {
            Some(a) => Ok(PageUser(a.clone())),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

pub fn see_other(to: impl AsRef<str>) -> Response {
    Redirect::to(to.as_ref()).into_response()
}

pub fn ago(ms: i64) -> String {
    let s = ((now_ms() - ms) / 1000).max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

pub fn took(ms: Option<i64>) -> String {
    match ms {
        None => String::new(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}
