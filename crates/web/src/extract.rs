//! Identity and ownership, resolved once per request (kanidm resolves identity in its extractors the same
//! way): a handler that takes [`OwnedServer`], [`OwnedSite`], [`OwnedJob`] or [`OwnedDeployment`] only runs
//! for the caller's own object. Another user's object and a missing one look the same: not found. Pages get
//! the sign-in redirect and the "not found" page; the API gets its JSON errors.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, OriginalUri, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use brokeforge_core::TeamRole;
use brokeforge_domain::policy::Action;
use brokeforge_store::{Deployment, Job, Server, ServerSite, Team};

use crate::auth::Authed;
use crate::error::ApiError;
use crate::pages::common::PageError;
use crate::state::AppState;

/// One of the caller's servers (path parameter `id`).
pub struct OwnedServer(pub Authed, pub Server);
/// One of the caller's sites, with its server.
pub struct OwnedSite(pub Authed, pub ServerSite, pub Server);
/// A job on one of the caller's servers.
pub struct OwnedJob(pub Authed, pub Job);
/// One of the caller's teams with their role there (path parameter `id`).
pub struct OwnedTeam(pub Authed, pub Team, pub TeamRole);
/// A deployment of one of the caller's sites.
pub struct OwnedDeployment(pub Authed, pub Deployment, pub ServerSite);

fn is_api(parts: &Parts) -> bool {
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map(|u| u.0.path().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    path.starts_with("/api/")
}

/// Who asks, and the `id` in the path; a refusal in the form the caller reads.
async fn caller(parts: &mut Parts) -> Result<(Authed, i64), Response> {
    let api = is_api(parts);
    let Some(authed) = parts.extensions.get::<Authed>().cloned() else {
        return Err(if api {
            ApiError::unauthorized().into_response()
        } else {
            Redirect::to("/login").into_response()
        });
    };
    let id = Path::<HashMap<String, String>>::from_request_parts(parts, &())
        .await
        .ok()
        .and_then(|p| p.0.get("id").and_then(|v| v.parse::<i64>().ok()));
    match id {
        Some(id) => Ok((authed, id)),
        None => Err(refuse(api, &authed, ApiError::not_found())),
    }
}

fn refuse(api: bool, authed: &Authed, e: ApiError) -> Response {
    if api {
        e.into_response()
    } else {
        PageError::with_user(e, authed).into_response()
    }
}

/// The action the matched route declared (API route table, pages' policy table). A route without one is
/// refused: a new route cannot reach a team's objects before it has a policy entry.
fn action(parts: &Parts) -> Result<Action, ApiError> {
    parts.extensions.get::<Action>().copied().ok_or_else(|| {
        tracing::error!(path = %parts.uri.path(), "a route without a policy entry was refused");
        ApiError::forbidden("this route has no policy entry".to_string())
    })
}

macro_rules! owned {
    ($name:ident, |$domain:ident, $authed:ident, $id:ident, $action:ident| $find:expr, |$found:ident| $build:expr) => {
        impl FromRequestParts<AppState> for $name {
            type Rejection = Response;
            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Response> {
                let api = is_api(parts);
                let ($authed, $id) = caller(parts).await?;
                let $action = action(parts).map_err(|e| refuse(api, &$authed, e))?;
                let $domain = &state.domain;
                match $find {
                    Ok($found) => Ok($build),
                    Err(e) => Err(refuse(api, &$authed, e.into())),
                }
            }
        }
    };
}

owned!(
    OwnedServer,
    |d, authed, id, a| d.owned_server(&authed.user, id, a).await,
    |server| OwnedServer(authed, server)
);
owned!(
    OwnedSite,
    |d, authed, id, a| d.owned_site(&authed.user, id, a).await,
    |found| OwnedSite(authed, found.0, found.1)
);
owned!(
    OwnedJob,
    |d, authed, id, a| d.owned_job(&authed.user, id, a).await,
    |job| OwnedJob(authed, job)
);
owned!(
    OwnedDeployment,
    |d, authed, id, a| d.owned_deployment(&authed.user, id, a).await,
    |found| OwnedDeployment(authed, found.0, found.1)
);
owned!(
    OwnedTeam,
    |d, authed, id, a| d.team_for(&authed.user, &id.to_string(), a).await,
    |found| OwnedTeam(authed, found.0, found.1)
);
