//! Logs, streamed from the server as plain text (nothing kept by BrokeForge).

use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::IntoResponse;
use brokeforge_domain::logs::LogRequest;

use super::common::ApiResponse;
use crate::extract::OwnedServer;
use crate::state::AppState;

/// The query (not flattened: query strings carry only text, which `flatten` cannot turn into numbers).
#[derive(serde::Deserialize)]
pub struct LogParams {
    pub kind: String,
    pub site: Option<String>,
    pub unit: Option<String>,
    pub lines: Option<u32>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub since: Option<i64>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub until: Option<i64>,
    #[serde(default)]
    pub follow: bool,
    /// Answer as a file to save.
    #[serde(default)]
    pub download: bool,
}

impl LogParams {
    pub fn request(&self) -> LogRequest {
        LogRequest {
            kind: self.kind.clone(),
            site: self.site.clone(),
            unit: self.unit.clone(),
            lines: self.lines,
            since: self.since,
            until: self.until,
            follow: self.follow,
        }
    }
}

pub async fn read(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Query(p): Query<LogParams>,
) -> ApiResponse {
    let (name, body) = state.domain.logs(&server, &p.request()).await?;
    let disposition = if p.download {
        format!("attachment; filename=\"{name}\"")
    } else {
        "inline".to_string()
    };
    Ok((
        [
            (CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
            (CONTENT_DISPOSITION, disposition),
            (CACHE_CONTROL, "no-store".to_string()),
            // Proxies must pass a followed log on line by line.
            (
                axum::http::HeaderName::from_static("x-accel-buffering"),
                "no".to_string(),
            ),
        ],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(body)),
    )
        .into_response())
}
