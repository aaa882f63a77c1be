//! Live updates with Server-Sent Events. A server's stream is its activity feed (milestone changes, command
//! output, job endings) in id order; the SSE id is the feed id, so a browser that reconnects with
//! `Last-Event-ID` gets exactly what it missed. Watchers sleep until the store says their server moved (in
//! this process, or on another node through LISTEN/NOTIFY); nothing polls in a loop.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use brokeforge_store::{CommandLog, LogStream, Store};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::auth::Authed;
use crate::error::ApiResult;

#[derive(Debug, Deserialize, Default)]
pub struct StreamQuery {
    /// Start after this feed id (a page passes the cursor it was rendered at). `Last-Event-ID` wins.
    pub after: Option<i64>,
    /// Only rows of this job.
    pub job: Option<i64>,
}

/// One feed row as an SSE event: `milestone` (the event JSON), `output` (a chunk of a command's output) or
/// `job` (a job ended).
pub fn to_event(row: &CommandLog) -> Event {
    let (kind, data) = match row.stream {
        LogStream::Event => ("milestone", row.chunk.clone()),
        LogStream::Job => ("job", row.chunk.clone()),
        s => (
            "output",
            json!({"job_id": row.job_id, "event_id": row.event_id, "stream": s.as_str(), "chunk": row.chunk})
                .to_string(),
        ),
    };
    Event::default()
        .id(row.id.to_string())
        .event(kind)
        .data(data)
}

struct Watch {
    store: Store,
    server_id: i64,
    job: Option<i64>,
    cursor: i64,
    buffer: VecDeque<CommandLog>,
    rx: tokio::sync::broadcast::Receiver<i64>,
    metrics: Arc<crate::metrics::Metrics>,
    _guard: WatcherGuard,
}

struct WatcherGuard(Arc<crate::metrics::Metrics>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.sse_watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Feed rows of one server after `cursor`, as a stream that waits for more.
pub fn watch(
    state: &AppState,
    server_id: i64,
    cursor: i64,
    job: Option<i64>,
) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    state.metrics.sse_watchers.fetch_add(1, Ordering::Relaxed);
    let w = Watch {
        // Subscribe before the first read, so nothing written in between is missed.
        rx: state.store.subscribe_activity(),
        store: state.store.clone(),
        server_id,
        job,
        cursor,
        buffer: VecDeque::new(),
        metrics: state.metrics.clone(),
        _guard: WatcherGuard(state.metrics.clone()),
    };
    futures_util::stream::unfold(w, |mut w| async move {
        loop {
            if let Some(row) = w.buffer.pop_front() {
                w.metrics.sse_events_sent.fetch_add(1, Ordering::Relaxed);
                return Some((Ok(to_event(&row)), w));
            }
            match w.store.activity(w.server_id, w.cursor, 500).await {
                Ok(rows) if !rows.is_empty() => {
                    w.cursor = rows.last().map(|r| r.id).unwrap_or(w.cursor);
                    w.buffer.extend(
                        rows.into_iter()
                            .filter(|r| w.job.is_none() || r.job_id == w.job),
                    );
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(server_id = w.server_id, error = %e, "reading activity failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            // Nothing new: sleep until this server moves. A lagging receiver or a long quiet spell reads
            // again, in case a notification from another node was lost while its listener reconnected.
            let wait = async {
                loop {
                    match w.rx.recv().await {
                        Ok(id) if id == w.server_id => return true,
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => return true,
                        Err(RecvError::Closed) => return false,
                    }
                }
            };
            if let Ok(false) = tokio::time::timeout(Duration::from_secs(30), wait).await {
                return None;
            }
        }
    })
}

/// `GET /api/v1/servers/{id}/stream`: the server's live feed.
pub async fn server_stream(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let server = state.store.server_for_user(authed.user.id, id).await?;
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
    Ok(Sse::new(watch(&state, server.id, cursor, q.job))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
