//! `GET /api/v1/servers/{id}/stream`: a server's live activity over Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::OwnedServer;
use crate::sse::{Live, watch};
use crate::state::AppState;

#[derive(Debug, Deserialize, Default)]
pub struct StreamQuery {
    /// Start after this feed id (a page passes the cursor it was rendered at). `Last-Event-ID` wins.
    pub after: Option<i64>,
    /// Only rows of this job.
    pub job: Option<i64>,
}

/// `GET /api/v1/servers/{id}/stream`: the server's live feed.
pub async fn server_stream(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let cursor = match (resume.or(q.after), q.job) {
        (Some(c), _) => c.max(0),
        // Following one job: from its first row (head first, so a row written in between is not missed).
        (None, Some(job)) => {
            let head = state.store.activity_head(server.id).await?;
            state.store.activity_before_job(job).await?.unwrap_or(head)
        }
        (None, None) => state.store.activity_head(server.id).await?,
    };
    let live = Live {
        hub: &state.hub,
        store: &state.store,
        metrics: &state.metrics,
        shutdown: &state.shutdown,
    };
    Ok(Sse::new(watch(live, server.id, cursor, q.job).await?)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
