//! Metrics, notification channels (per team) and alert rules (per server).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use brokeforge_core::time::now_ms;
use brokeforge_domain::monitoring::{
    AlertSpec, ChannelSpec, MetricsView, NewChannel, describe_rule,
};

use super::common::{ApiResponse, Body, Created, Typed};
use super::types::{
    AlertEntry, AlertList, AlertResponse, ChannelList, CheckEntry, CheckResponse, CheckWithHistory,
    DeliveryList, DeliveryResponse, MetricsQuery,
};
use crate::error::ApiError;
use crate::extract::{OwnedServer, OwnedTeam};
use crate::state::AppState;

/// `since` as a time: a number of ms, or `1h` back from now.
pub fn since_ms(since: Option<&str>) -> Result<i64, ApiError> {
    match since.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(now_ms() - 3600 * 1000),
        Some(s) if s.len() > 10 && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse()
            .map_err(|_| ApiError::invalid("since", "not a time")),
        Some(s) => {
            // As far back as the hourly rollups go.
            let secs = brokeforge_domain::monitoring::parse_duration_upto("since", s, 90 * 86400)
                .map_err(brokeforge_domain::DomainError::from)?;
            Ok(now_ms() - secs * 1000)
        }
    }
}

pub async fn metrics(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Query(p): Query<MetricsQuery>,
) -> Typed<MetricsView> {
    let since = since_ms(p.since.as_deref())?;
    let names: Vec<String> = p
        .metrics
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    Ok(Json(state.domain.metrics(&server, since, &names).await?))
}

fn rule_entry(
    r: &brokeforge_store::AlertRule,
    channels: &[brokeforge_store::Channel],
) -> AlertEntry {
    let channel = r
        .channel_id
        .and_then(|id| channels.iter().find(|c| c.id == id))
        .map(|c| c.name.clone());
    AlertEntry {
        id: r.id,
        kind: r.kind.clone(),
        metric: r.metric.clone(),
        comparison: r.comparison.clone(),
        threshold: r.threshold,
        for_seconds: r.for_secs,
        channel,
        state: r.state.clone(),
        state_since: r.state_since,
        last_value: r.last_value,
        detail: r.detail.clone(),
        last_notified_at: r.last_notified_at,
        description: describe_rule(r),
        created_at: r.created_at,
    }
}

pub async fn list_alerts(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
) -> Typed<AlertList> {
    let rules = state.domain.alerts(&server).await?;
    let channels = state.domain.channels(server.team_id).await?;
    Ok(Json(AlertList {
        alerts: rules.iter().map(|r| rule_entry(r, &channels)).collect(),
    }))
}

pub async fn add_alert(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(spec): Body<AlertSpec>,
) -> Result<Created<AlertResponse>, ApiError> {
    let rule = state.domain.add_alert(&server, &spec).await?;
    let channels = state.domain.channels(server.team_id).await?;
    Ok(Created(AlertResponse {
        alert: rule_entry(&rule, &channels),
    }))
}

pub async fn update_alert(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, rule)): Path<(i64, i64)>,
    Body(spec): Body<AlertSpec>,
) -> Typed<AlertResponse> {
    let rule = state.domain.update_alert(&server, rule, &spec).await?;
    let channels = state.domain.channels(server.team_id).await?;
    Ok(Json(AlertResponse {
        alert: rule_entry(&rule, &channels),
    }))
}

pub async fn remove_alert(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, rule)): Path<(i64, i64)>,
) -> ApiResponse {
    state.domain.remove_alert(&server, rule).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_channels(
    State(state): State<AppState>,
    OwnedTeam(_, team, _): OwnedTeam,
) -> Typed<ChannelList> {
    Ok(Json(ChannelList {
        channels: state.domain.channels(team.id).await?,
    }))
}

pub async fn add_channel(
    State(state): State<AppState>,
    OwnedTeam(_, team, _): OwnedTeam,
    Body(spec): Body<ChannelSpec>,
) -> Result<Created<NewChannel>, ApiError> {
    Ok(Created(state.domain.add_channel(team.id, &spec).await?))
}

pub async fn remove_channel(
    State(state): State<AppState>,
    OwnedTeam(_, team, _): OwnedTeam,
    Path((_, name)): Path<(i64, String)>,
) -> ApiResponse {
    state.domain.remove_channel(team.id, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn test_channel(
    State(state): State<AppState>,
    OwnedTeam(_, team, _): OwnedTeam,
    Path((_, name)): Path<(i64, String)>,
) -> Typed<DeliveryResponse> {
    let delivery = state.domain.test_channel(team.id, &name).await?;
    Ok(Json(DeliveryResponse { delivery }))
}

pub async fn deliveries(
    State(state): State<AppState>,
    OwnedTeam(_, team, _): OwnedTeam,
    Path((_, name)): Path<(i64, String)>,
) -> Typed<DeliveryList> {
    Ok(Json(DeliveryList {
        deliveries: state.domain.deliveries(team.id, &name).await?,
    }))
}

fn check_entry(c: &brokeforge_store::SiteCheck) -> CheckEntry {
    let (https, path) = c.target();
    CheckEntry {
        path: path.to_string(),
        https,
        expect: c.expect_status,
        interval_seconds: c.interval_secs,
        timeout_seconds: c.timeout_secs,
        after_deploy: c.after_deploy.clone(),
        state: c.state.clone(),
        last_checked_at: c.last_checked_at,
        last_status: c.last_status,
        last_ms: c.last_ms,
        last_error: c.last_error.clone(),
    }
}

pub async fn show_check(
    State(state): State<AppState>,
    crate::extract::OwnedSite(_, site, server): crate::extract::OwnedSite,
    Query(p): Query<MetricsQuery>,
) -> Typed<CheckWithHistory> {
    let check = state
        .domain
        .site_check(&site)
        .await?
        .ok_or(brokeforge_domain::DomainError::NotFound)?;
    let since = since_ms(p.since.as_deref())?;
    let (up, ms) = brokeforge_domain::monitoring::check_metrics(&site.domain);
    let view = state.domain.metrics(&server, since, &[up, ms]).await?;
    Ok(Json(CheckWithHistory {
        check: check_entry(&check),
        history: view.series,
    }))
}

pub async fn put_check(
    State(state): State<AppState>,
    crate::extract::OwnedSite(_, site, _): crate::extract::OwnedSite,
    Body(spec): Body<brokeforge_domain::monitoring::CheckSpec>,
) -> Typed<CheckResponse> {
    let check = state.domain.put_site_check(&site, &spec).await?;
    Ok(Json(CheckResponse {
        check: check_entry(&check),
    }))
}

pub async fn remove_check(
    State(state): State<AppState>,
    crate::extract::OwnedSite(_, site, _): crate::extract::OwnedSite,
) -> ApiResponse {
    state.domain.remove_site_check(&site).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
