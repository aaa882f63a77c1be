//! Live updates with Server-Sent Events. A server's stream is its activity feed (milestone changes, command
//! output, job endings) in id order; the SSE id is the feed id, so a browser that reconnects with
//! `Last-Event-ID` gets exactly what it missed. Watchers sleep until the store says their server moved (in
//! this process, or on another node through LISTEN/NOTIFY); nothing polls in a loop.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::response::sse::Event;
use brokeforge_store::{CommandLog, LogStream, Store};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

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

/// Rows recently read for one server, shared by all its watchers: one database read per change, however
/// many browsers watch. A watcher further behind than the ring reads the database itself.
struct Feed {
    ring: std::sync::RwLock<Ring>,
    head: tokio::sync::watch::Sender<i64>,
}

struct Ring {
    /// The cursor just before `rows[0]` (rows after it are all here, in order).
    base: i64,
    rows: VecDeque<CommandLog>,
}

const RING_ROWS: usize = 2000;

/// One [`Feed`] per watched server, alive while someone watches.
#[derive(Default)]
pub struct Hub {
    feeds: std::sync::Mutex<std::collections::HashMap<i64, Arc<Feed>>>,
}

impl Hub {
    /// The server's feed and a subscription to it, taken under the map's lock so a feed being retired
    /// (nobody watching) is never handed out.
    async fn feed(
        self: &Arc<Self>,
        store: &Store,
        server_id: i64,
    ) -> Result<(Arc<Feed>, tokio::sync::watch::Receiver<i64>), brokeforge_store::StoreError> {
        if let Some(f) = self
            .feeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&server_id)
        {
            return Ok((f.clone(), f.head.subscribe()));
        }
        // Subscribe before reading the head, so a write in between wakes the feed.
        let rx = store.subscribe_activity();
        let head = store.activity_head(server_id).await?;
        let (feed, sub) = {
            let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = feeds.get(&server_id) {
                return Ok((f.clone(), f.head.subscribe()));
            }
            let feed = Arc::new(Feed {
                ring: std::sync::RwLock::new(Ring {
                    base: head,
                    rows: VecDeque::new(),
                }),
                head: tokio::sync::watch::channel(head).0,
            });
            feeds.insert(server_id, feed.clone());
            let sub = feed.head.subscribe();
            (feed, sub)
        };
        tokio::spawn(run_feed(
            self.clone(),
            store.clone(),
            server_id,
            feed.clone(),
            rx,
        ));
        Ok((feed, sub))
    }
}

async fn run_feed(
    hub: Arc<Hub>,
    store: Store,
    server_id: i64,
    feed: Arc<Feed>,
    mut rx: tokio::sync::broadcast::Receiver<i64>,
) {
    let mut last = *feed.head.borrow();
    loop {
        // Read everything new for this server.
        loop {
            match store.activity(server_id, last, 1000).await {
                Ok(rows) if !rows.is_empty() => {
                    let n = rows.len();
                    last = rows.last().map(|r| r.id).unwrap_or(last);
                    {
                        let mut ring = feed.ring.write().unwrap_or_else(|e| e.into_inner());
                        ring.rows.extend(rows);
                        while ring.rows.len() > RING_ROWS {
                            if let Some(old) = ring.rows.pop_front() {
                                ring.base = old.id;
                            }
                        }
                    }
                    feed.head.send_replace(last);
                    if n < 1000 {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(server_id, error = %e, "reading activity failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        // Sleep until this server moves (a long quiet spell reads again, in case a notification from
        // another node was lost while its listener reconnected); stop when nobody watches.
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(id) if id == server_id => return true,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => return true,
                    Err(RecvError::Closed) => return false,
                }
            }
        };
        let woke = tokio::time::timeout(Duration::from_secs(30), wait).await;
        if matches!(woke, Ok(false)) || feed.head.receiver_count() == 0 {
            let mut feeds = hub.feeds.lock().unwrap_or_else(|e| e.into_inner());
            // A watcher may have joined meanwhile: only an unwatched feed goes.
            if feed.head.receiver_count() == 0 {
                feeds.remove(&server_id);
                return;
            }
        }
    }
}

struct Watch {
    store: Store,
    server_id: i64,
    job: Option<i64>,
    cursor: i64,
    buffer: VecDeque<CommandLog>,
    feed: Arc<Feed>,
    head: tokio::sync::watch::Receiver<i64>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
    _guard: WatcherGuard,
}

struct WatcherGuard(Arc<crate::metrics::Metrics>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.sse_watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a live stream needs from the app: the shared feeds, the store, the metrics, the shutdown signal.
pub struct Live<'a> {
    pub hub: &'a Arc<Hub>,
    pub store: &'a Store,
    pub metrics: &'a Arc<crate::metrics::Metrics>,
    pub shutdown: &'a tokio_util::sync::CancellationToken,
}

/// Feed rows of one server after `cursor`, as a stream that waits for more.
pub async fn watch(
    live: Live<'_>,
    server_id: i64,
    cursor: i64,
    job: Option<i64>,
) -> Result<impl Stream<Item = Result<Event, Infallible>> + use<>, brokeforge_store::StoreError> {
    let (feed, head) = live.hub.feed(live.store, server_id).await?;
    live.metrics.sse_watchers.fetch_add(1, Ordering::Relaxed);
    let w = Watch {
        head,
        feed,
        store: live.store.clone(),
        server_id,
        job,
        cursor,
        buffer: VecDeque::new(),
        metrics: live.metrics.clone(),
        shutdown: live.shutdown.clone(),
        _guard: WatcherGuard(live.metrics.clone()),
    };
    Ok(futures_util::stream::unfold(w, |mut w| async move {
        loop {
            if let Some(row) = w.buffer.pop_front() {
                w.metrics.sse_events_sent.fetch_add(1, Ordering::Relaxed);
                return Some((Ok(to_event(&row)), w));
            }
            // Mark the current head seen first: a change after this wakes the wait below.
            w.head.borrow_and_update();
            let from_ring: Option<Vec<CommandLog>> = {
                let ring = w.feed.ring.read().unwrap_or_else(|e| e.into_inner());
                (w.cursor >= ring.base).then(|| {
                    ring.rows
                        .iter()
                        .filter(|r| r.id > w.cursor)
                        .take(500)
                        .cloned()
                        .collect()
                })
            };
            let rows = match from_ring {
                Some(rows) => rows,
                // Behind the ring (a resume after a long gap): read the database.
                None => match w.store.activity(w.server_id, w.cursor, 500).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(server_id = w.server_id, error = %e, "reading activity failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            if !rows.is_empty() {
                w.cursor = rows.last().map(|r| r.id).unwrap_or(w.cursor);
                w.buffer.extend(
                    rows.into_iter()
                        .filter(|r| w.job.is_none() || r.job_id == w.job),
                );
                continue;
            }
            // Wait for news; the stream ends with the feed or when BrokeForge shuts down (the browser
            // reconnects to another node, or to this one when it is back, with Last-Event-ID).
            tokio::select! {
                changed = tokio::time::timeout(Duration::from_secs(30), w.head.changed()) => {
                    if let Ok(Err(_)) = changed {
                        return None;
                    }
                }
                _ = w.shutdown.cancelled() => return None,
            }
        }
    }))
}
