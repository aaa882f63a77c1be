//! Endpoints without a session: health, the provisioning script and its callbacks (authenticated by the
//! one-time token), and deploy webhooks (authenticated by the site's secret).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use brokeforge_packages::PackageError;
use brokeforge_packages::services::server::access::onboarding::Callback;
use serde_json::json;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/provision/{token}", get(script).head(script_head))
        .route("/provision/{token}/callback", post(callback))
        .route("/hooks/sites/{site_id}/deploy/{token}", post(deploy_hook))
        .route(
            brokeforge_packages::services::monitoring::agent::INGEST_PATH,
            post(ingest_metrics),
        )
}

/// `/metrics`: for the operator's scraper only (its token, or a scraper on this machine).
async fn metrics(State(state): State<AppState>, parts: axum::http::request::Parts) -> Response {
    let allowed = match &state.config.metrics_token {
        Some(expected) => parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| crate::auth::csrf_matches(expected, given.trim())),
        None => parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|c| c.0.ip().is_loopback()),
    };
    if !allowed {
        return (
            StatusCode::FORBIDDEN,
            "metrics: send BROKEFORGE_METRICS_TOKEN as a bearer token (without one, only this machine may scrape)\n",
        )
            .into_response();
    }
    crate::metrics::render(&state.store, &state.metrics).await
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    // Load balancers need an answer quickly, also (especially) while the database is down.
    let ping = tokio::time::timeout(std::time::Duration::from_secs(1), state.store.ping()).await;
    match ping.unwrap_or_else(|_| {
        Err(brokeforge_store::StoreError::InvalidData(
            "timed out".into(),
        ))
    }) {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": "ok"})),
        ),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "error", "database": "unreachable"})),
            )
        }
    }
}

const GONE: &str = "echo 'BrokeForge: this provisioning link is invalid, expired or already used. Create a new one in BrokeForge.' >&2; exit 1\n";

/// The one-line script: served once per token, public keys only.
async fn script(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let base = match state.script_base_url(&headers) {
        Ok(base) => base.url,
        Err(e) => {
            // Said as shell, since it is piped into bash.
            let text = e.message.replace('\'', "");
            return (
                StatusCode::BAD_REQUEST,
                format!("echo 'BrokeForge: {text}' >&2; exit 1\n"),
            )
                .into_response();
        }
    };
    let callback = format!("{base}/provision/{token}/callback");
    match state.domain.provisioning_script(&token, &callback).await {
        Ok(Some(script)) => (
            [(header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")],
            script,
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, GONE).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "serving a provisioning script failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "echo 'BrokeForge: internal error' >&2; exit 1\n",
            )
                .into_response()
        }
    }
}

/// `HEAD` of the script: whether the link works, without using it up (link checkers and proxies send it).
async fn script_head(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.domain.provisioning_token_valid(&token).await {
        Ok(true) => (
            [(header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")],
            "",
        )
            .into_response(),
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Progress reports from the script, authenticated by the token in the path.
/// A metrics collector's report (`name value` lines), authenticated by the server's own bearer token.
async fn ingest_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim();
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unauthorized", "message": "unknown or revoked collector token"})),
        )
            .into_response()
    };
    if token.is_empty() {
        return unauthorized();
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_report", "message": "the report is not text"})),
        )
            .into_response();
    };
    match state.domain.ingest_metrics(token, text).await {
        Ok(Some(r)) => (
            StatusCode::OK,
            Json(json!({"accepted": r.accepted, "skipped": r.skipped})),
        )
            .into_response(),
        Ok(None) => unauthorized(),
        Err(brokeforge_domain::DomainError::Invalid(v)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_report", "message": v.to_string()})),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "storing a metrics report failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "internal", "message": "internal error"})),
            )
                .into_response()
        }
    }
}

async fn callback(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let cb: Callback = match serde_json::from_slice(&body) {
        Ok(cb) => cb,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_report", "message": e.to_string()})),
            )
                .into_response();
        }
    };
    match state.domain.provisioning_report(&token, &cb).await {
        Ok(Some(job)) => (
            StatusCode::OK,
            Json(json!({"ok": true, "job_id": job.map(|j| j.id)})),
        )
            .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(
                json!({"error": "not_found", "message": "unknown or finished provisioning token"}),
            ),
        )
            .into_response(),
        Err(brokeforge_domain::DomainError::Invalid(v)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_report", "message": v.to_string()})),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "recording a provisioning report failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "internal", "message": "internal error"})),
            )
                .into_response()
        }
    }
}

/// A deploy webhook (GitHub, GitLab or a plain POST). A request that fails a check changes nothing.
async fn deploy_hook(
    State(state): State<AppState>,
    Path((site_id, token)): Path<(i64, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use brokeforge_packages::services::sites::webhook::{WebhookError, WebhookOutcome};
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let error = |status: StatusCode, code: &str, message: String| {
        (status, Json(json!({"error": code, "message": message}))).into_response()
    };
    match state
        .domain
        .deploy_webhook(site_id, &token, header, &body)
        .await
    {
        Ok(WebhookOutcome::Deployed(queued)) => {
            let (d, job) = *queued;
            (
                StatusCode::ACCEPTED,
                Json(json!({"ok": true, "deployment_id": d.id, "job_id": job.id})),
            )
                .into_response()
        }
        Ok(WebhookOutcome::Joined(d)) => (
            StatusCode::ACCEPTED,
            Json(json!({"ok": true, "deployment_id": d.id, "job_id": d.job_id, "joined": true})),
        )
            .into_response(),
        Ok(WebhookOutcome::Ignored(why)) => {
            (StatusCode::OK, Json(json!({"ok": true, "ignored": why}))).into_response()
        }
        Err(WebhookError::NotFound) => {
            error(StatusCode::NOT_FOUND, "not_found", "unknown webhook".into())
        }
        Err(WebhookError::Unauthorized(why)) => {
            tracing::warn!(site_id, reason = why, "deploy webhook refused");
            error(StatusCode::UNAUTHORIZED, "unauthorized", why.into())
        }
        Err(WebhookError::BadRequest(why)) => error(StatusCode::BAD_REQUEST, "bad_request", why),
        Err(WebhookError::Package(PackageError::Validation(v))) => {
            error(StatusCode::CONFLICT, "not_deployable", v.to_string())
        }
        Err(WebhookError::Package(e)) => {
            tracing::error!(site_id, error = %e, "deploy webhook failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            )
        }
    }
}
