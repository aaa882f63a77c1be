//! Identity and ownership, resolved once per request (kanidm resolves identity in its extractors the same
//! way): a handler that takes [`OwnedServer`], [`OwnedSite`], [`OwnedJob`] or [`OwnedDeployment`] only runs
//! for the caller's own object. Another user's object and a missing one look the same: not found. Pages get
//! the sign-in redirect and the "not found" page; the API gets its JSON errors.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, OriginalUri, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use brokeforge_store::{Deployment, Job, Server, ServerSite};

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

macro_rules! owned {
    ($name:ident, |$domain:ident, $authed:ident, $id:ident| $find:expr, |$found:ident| $build:expr) => {
        impl FromRequestParts<AppState> for $name {
            type Rejection = Response;
            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Response> {
                let api = is_api(parts);
                let ($authed, $id) = caller(parts).await?;
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
    |d, authed, id| d.owned_server(&authed.user, id).await,
    |server| OwnedServer(authed, server)
);
owned!(
    OwnedSite,
    |d, authed, id| d.owned_site(&authed.user, id).await,
    |found| OwnedSite(authed, found.0, found.1)
);
owned!(
    OwnedJob,
    |d, authed, id| d.owned_job(&authed.user, id).await,
    |job| OwnedJob(authed, job)
);
owned!(
    OwnedDeployment,
    |d, authed, id| d.owned_deployment(&authed.user, id).await,
    |found| OwnedDeployment(authed, found.0, found.1)
);
