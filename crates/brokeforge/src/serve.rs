//! `brokeforge serve`: the HTTP server (for now `GET /health`) and in-process job workers.

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use brokeforge_packages::jobs::{Registry, Worker, WorkerConfig};
use brokeforge_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(store)
}

async fn health(State(store): State<Store>) -> (StatusCode, Json<serde_json::Value>) {
    match store.ping().await {
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

pub async fn serve(bind: &str, worker: WorkerConfig) -> Result<()> {
    let store = crate::config::open_store().await?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    tokio::spawn(crate::shutdown_on_signal(stop.clone()));
    let workers =
        tokio::spawn(Worker::new(store.clone(), Registry::standard(), worker).run(stop.clone()));
    println!("BrokeForge is listening on http://{addr}");
    let http_stop = stop.clone();
    axum::serve(listener, router(store.clone()))
        .with_graceful_shutdown(async move { http_stop.cancelled().await })
        .await
        .context("server error")?;
    workers.await.context("worker task")??;
    store.close().await;
    Ok(())
}
