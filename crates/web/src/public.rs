//! Endpoints without a session: health, the provisioning script and its callbacks (authenticated by the
//! one-time token), and deploy webhooks (authenticated by the site's secret).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use brokeforge_packages::PackageError;
use brokeforge_packages::services::server::access::onboarding::{
    Callback, handle_callback, provisioning_script,
};
use serde_json::json;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/provision/{token}", get(script))
        .route("/provision/{token}/callback", post(callback))
        .route("/hooks/sites/{site_id}/deploy/{token}", post(deploy_hook))
}

async fn metrics(State(state): State<AppState>) -> Response {
    crate::metrics::render(&state.store, &state.metrics).await
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    match state.store.ping().await {
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
    let Some(base) = state.base_url(&headers) else {
        return (StatusCode::BAD_REQUEST, "bad Host header\n").into_response();
    };
    let callback = format!("{base}/provision/{token}/callback");
    match provisioning_script(&state.store, &token, &callback).await {
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

/// Progress reports from the script, authenticated by the token in the path.
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
    match handle_callback(&state.store, &token, &cb).await {
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
        Err(PackageError::Validation(v)) => (
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
    use brokeforge_packages::services::sites::webhook::{self, WebhookError, WebhookOutcome};
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let error = |status: StatusCode, code: &str, message: String| {
        (status, Json(json!({"error": code, "message": message}))).into_response()
    };
    match webhook::handle(&state.store, site_id, &token, header, &body).await {
        Ok(WebhookOutcome::Deployed(queued)) => {
            let (d, job) = *queued;
            (
                StatusCode::ACCEPTED,
                Json(json!({"ok": true, "deployment_id": d.id, "job_id": job.id})),
            )
                .into_response()
        }
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
