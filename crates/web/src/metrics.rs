//! `GET /metrics` in Prometheus text format: jobs by state and their durations (from the database, so every
//! node reports the same queue), HTTP requests, live SSE watchers and SSH errors (this process).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use brokeforge_packages::base::metrics::{JOB_DURATION_BUCKETS_S, JOBS};
use brokeforge_store::JobStatus;

use brokeforge_store::Store;
use std::sync::Arc;

#[derive(Default)]
pub struct Metrics {
    pub requests_2xx: AtomicU64,
    pub requests_3xx: AtomicU64,
    pub requests_4xx: AtomicU64,
    pub requests_5xx: AtomicU64,
    pub sse_watchers: AtomicU64,
    pub sse_events_sent: AtomicU64,
}

pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let counter = match res.status().as_u16() {
        200..=299 => &m.requests_2xx,
        300..=399 => &m.requests_3xx,
        400..=499 => &m.requests_4xx,
        _ => &m.requests_5xx,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    res
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics` in Prometheus' text format.
pub async fn render(store: &Store, metrics: &Metrics) -> Response {
    match build(store, metrics).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

async fn build(store: &Store, m: &Metrics) -> Result<String, brokeforge_store::StoreError> {
    let mut out = String::new();
    // Only the live part of the queue is counted in the database (an index lookup, whatever the history);
    // how jobs ended is this process's own counter.
    let _ = writeln!(
        out,
        "# HELP brokeforge_jobs Jobs waiting or running, from the database."
    );
    let _ = writeln!(out, "# TYPE brokeforge_jobs gauge");
    for s in [JobStatus::Queued, JobStatus::Running] {
        let n = store.count_jobs(s).await?;
        let _ = writeln!(out, "brokeforge_jobs{{state=\"{}\"}} {n}", s.as_str());
    }
    let _ = writeln!(
        out,
        "# HELP brokeforge_job_duration_seconds How long the jobs this process ran took, by kind and outcome."
    );
    let _ = writeln!(out, "# TYPE brokeforge_job_duration_seconds histogram");
    for ((kind, status), h) in JOBS.snapshot() {
        let l = format!("kind=\"{}\",status=\"{}\"", label(&kind), label(status));
        for (i, b) in JOB_DURATION_BUCKETS_S.iter().enumerate() {
            let _ = writeln!(
                out,
                "brokeforge_job_duration_seconds_bucket{{{l},le=\"{b}\"}} {}",
                h.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "brokeforge_job_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "brokeforge_job_duration_seconds_sum{{{l}}} {}",
            h.sum_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "brokeforge_job_duration_seconds_count{{{l}}} {}",
            h.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP brokeforge_http_requests_total HTTP responses by status class."
    );
    let _ = writeln!(out, "# TYPE brokeforge_http_requests_total counter");
    for (class, c) in [
        ("2xx", &m.requests_2xx),
        ("3xx", &m.requests_3xx),
        ("4xx", &m.requests_4xx),
        ("5xx", &m.requests_5xx),
    ] {
        let _ = writeln!(
            out,
            "brokeforge_http_requests_total{{class=\"{class}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP brokeforge_sse_watchers Live event streams.");
    let _ = writeln!(out, "# TYPE brokeforge_sse_watchers gauge");
    let _ = writeln!(
        out,
        "brokeforge_sse_watchers {}",
        m.sse_watchers.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP brokeforge_sse_events_sent_total Events sent to watchers."
    );
    let _ = writeln!(out, "# TYPE brokeforge_sse_events_sent_total counter");
    let _ = writeln!(
        out,
        "brokeforge_sse_events_sent_total {}",
        m.sse_events_sent.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP brokeforge_ssh_errors_total SSH connection and channel failures."
    );
    let _ = writeln!(out, "# TYPE brokeforge_ssh_errors_total counter");
    let _ = writeln!(
        out,
        "brokeforge_ssh_errors_total {}",
        brokeforge_packages::base::executor::SSH_ERRORS.load(Ordering::Relaxed)
    );
    Ok(out)
}
