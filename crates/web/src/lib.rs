//! The web app: accounts, server-rendered pages, the JSON API under `/api/v1`, live updates over SSE, and the
//! endpoints servers call (provisioning script and callbacks, deploy webhooks). Nothing below this crate knows
//! about HTTP.

pub mod api;
pub mod audit;
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

use auth::{Via, cross_site, csrf_matches, is_unsafe};
use error::ApiError;
pub use state::{AppState, WebConfig};

/// Every route: pages, the API, SSE, and the endpoints servers call.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(public::routes())
        .merge(pages::routes())
        .nest(
            "/api/v1",
            // Inside authentication: a key is the caller's own.
            api::routes().layer(axum::middleware::from_fn_with_state(
                state.clone(),
                api::idempotency::idempotent,
            )),
        )
        // Inside authentication (it needs the caller), after routing (it needs the route).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate_layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Scripts and styles only from BrokeForge itself (no inline code: a name shown on a page can never run),
/// never framed, no sniffing, no referrer to other sites.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// Security headers on every answer; pages and API answers for a signed-in user are never cached.
async fn security_headers(req: Request, next: Next) -> Response {
    let signed_in = auth::cookie_header_has_session(req.headers())
        || req.headers().contains_key(header::AUTHORIZATION);
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, axum::http::HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    if signed_in && !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    res
}

/// Largest form body read for the CSRF check.
const MAX_FORM: usize = 256 * 1024;

/// Find who is asking (bearer token or session cookie) once per request, and refuse cross-site forgeries:
/// no state-changing request from another site is served at all (signed in or not: the sign-in and setup
/// forms too), and one with a session cookie also needs the session's CSRF token, in `X-CSRF-Token` or the
/// form field `_csrf`. Bearer tokens are not ambient, so they need no CSRF token.
async fn authenticate_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if is_unsafe(&parts.method) && cross_site(&parts) {
        return ApiError::forbidden("cross-site request refused").into_response();
    }
    // The scraper's and the metrics collectors' tokens are not accounts': their routes check them.
    if parts.uri.path() == "/metrics"
        || parts.uri.path() == brokeforge_packages::services::monitoring::agent::INGEST_PATH
    {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let authed = match auth::authenticate(&state.domain, &parts).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let mut body = body;
    if let Some(a) = &authed
        && a.via == Via::Session
        && is_unsafe(&parts.method)
    {
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
        if a.via == Via::Token {
            let route = parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
            if let Err(e) = auth::scope_allows(a.scope, &parts.method, &route) {
                return e.into_response();
            }
        }
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
