//! The web app: accounts, server-rendered pages, the JSON API under `/api/v1`, live updates over SSE, and the
//! endpoints servers call (provisioning script and callbacks, deploy webhooks). Nothing below this crate knows
//! about HTTP.

pub mod api;
pub mod auth;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod pages;
pub mod public;
pub mod sse;
pub mod state;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use auth::{Via, csrf_matches, is_unsafe, same_origin};
use error::ApiError;
pub use state::{AppState, WebConfig};

/// Every route: pages, the API, SSE, and the endpoints servers call.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(public::routes())
        .merge(pages::routes())
        .nest("/api/v1", api::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate_layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Largest form body read for the CSRF check.
const MAX_FORM: usize = 256 * 1024;

/// Find who is asking (bearer token or session cookie) once per request, and refuse cross-site forgeries:
/// a state-changing request with a session cookie needs a same-origin `Origin` (when sent) and the session's
/// CSRF token, in `X-CSRF-Token` or the form field `_csrf`. Bearer tokens are not ambient, so they need
/// neither.
async fn authenticate_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let authed = match auth::authenticate(&state.domain, &parts).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let mut body = body;
    if let Some(a) = &authed
        && a.via == Via::Session
        && is_unsafe(&parts.method)
    {
        if !same_origin(&parts) {
            return ApiError::forbidden("cross-site request refused").into_response();
        }
        let header_token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let token = match header_token {
            Some(t) => t,
            None => {
                let is_form = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
                if !is_form {
                    return ApiError::forbidden("missing CSRF token (send X-CSRF-Token)")
                        .into_response();
                }
                let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
                    Ok(b) => b,
                    Err(_) => {
                        return ApiError::new(
                            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                            "too_large",
                            "the form is too large",
                        )
                        .into_response();
                    }
                };
                let token = form_field(&bytes, "_csrf").unwrap_or_default();
                body = Body::from(bytes);
                token
            }
        };
        if !csrf_matches(&a.csrf, &token) {
            return ApiError::forbidden("missing or wrong CSRF token; reload the page")
                .into_response();
        }
    }
    if let Some(a) = authed {
        parts.extensions.insert(a);
    }
    next.run(Request::from_parts(parts, body)).await
}

/// One field of an urlencoded form.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}
