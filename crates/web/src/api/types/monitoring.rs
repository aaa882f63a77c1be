//! Monitoring: alert rules, channels, deliveries, metrics, HTTP checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An alert rule with its state; `description` says it in words.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AlertEntry {
    pub id: i64,
    /// metric, service_down, not_reporting, job_failed, drift or cert_expiring.
    pub kind: String,
    pub metric: Option<String>,
    /// above or below.
    pub comparison: Option<String>,
    pub threshold: Option<f64>,
    pub for_seconds: i64,
    /// The team channel it notifies (none: all of them).
    pub channel: Option<String>,
    /// ok, pending, firing or resolved.
    pub state: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub state_since: i64,
    pub last_value: Option<f64>,
    pub detail: Option<String>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub last_notified_at: Option<i64>,
    pub description: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AlertResponse {
    pub alert: AlertEntry,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ChannelList {
    pub channels: Vec<brokeforge_store::Channel>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryResponse {
    pub delivery: brokeforge_store::Delivery,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<brokeforge_store::Delivery>,
}

/// `GET /servers/{id}/metrics` and `GET /sites/{id}/check`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MetricsQuery {
    /// Milliseconds since the epoch, or a duration back from now (`1h`, `24h`, `7d`); 1h by default.
    pub since: Option<String>,
    /// Comma-separated metric names whose series to return.
    pub metrics: Option<String>,
}

/// A site's HTTP check and how it went last.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CheckEntry {
    pub path: String,
    pub https: bool,
    pub expect: i64,
    pub interval_seconds: i64,
    pub timeout_seconds: i64,
    /// off, fail or rollback.
    pub after_deploy: String,
    /// ok, failing or unknown.
    pub state: String,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub last_checked_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CheckResponse {
    pub check: CheckEntry,
}

/// The check, and its up (1/0) and response-time series since `since`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckWithHistory {
    pub check: CheckEntry,
    pub history: Vec<brokeforge_domain::monitoring::Series>,
}
