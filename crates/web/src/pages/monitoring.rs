//! A server's monitoring page: the newest report, charts over 1 h / 24 h / 7 d / 30 d (SVG drawn here, no
//! script and no build step, readable on a phone), alert rules with their state, and the team's channels.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use brokeforge_core::time::now_ms;
use brokeforge_domain::monitoring::{AlertSpec, ChannelSpec, MetricSample, describe_rule};
use brokeforge_store::{AlertRule, Channel, Delivery, Sample, Server};

use super::common::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

/// The charts: (metric, title, unit, fixed top of the scale).
const CHARTS: [(&str, &str, &str, Option<f64>); 6] = [
    ("cpu_percent", "CPU", "%", Some(100.0)),
    ("memory_used_percent", "Memory", "%", Some(100.0)),
    ("disk_used_percent", "Fullest disk", "%", Some(100.0)),
    ("load1", "Load (1 min)", "", None),
    ("net_rx_bytes_per_second", "Network in", "B/s", None),
    ("net_tx_bytes_per_second", "Network out", "B/s", None),
];

/// The ranges a chart covers: (query value, label, milliseconds).
pub const RANGES: [(&str, &str, i64); 4] = [
    ("1h", "1 hour", 3_600_000),
    ("24h", "24 hours", 86_400_000),
    ("7d", "7 days", 7 * 86_400_000),
    ("30d", "30 days", 30 * 86_400_000),
];

pub struct Chart {
    pub title: &'static str,
    pub latest: String,
    pub svg: String,
}

pub struct RuleRow {
    pub rule: AlertRule,
    pub description: String,
    pub channel: String,
}

#[derive(Template)]
#[template(path = "monitoring.html")]
pub struct MonitoringPage {
    pub nav: Nav,
    pub server: Server,
    pub installed: bool,
    pub last_report: String,
    pub range: &'static str,
    pub ranges: Vec<(&'static str, &'static str)>,
    pub charts: Vec<Chart>,
    pub services: Vec<(String, bool)>,
    pub rules: Vec<RuleRow>,
    pub channels: Vec<(Channel, Option<Delivery>)>,
    pub signing_secret: String,
}

/// A number for people: 1234567 → "1.2 M".
fn human(v: f64, unit: &str) -> String {
    let (v, prefix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, " G"),
        a if a >= 1e6 => (v / 1e6, " M"),
        a if a >= 1e4 => (v / 1e3, " k"),
        _ => (v, " "),
    };
    let text = if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    format!("{text}{prefix}{unit}").trim_end().to_string()
}

/// The mean of the points in each of `n` equal buckets of `[since, until)`; `None` where none fell.
fn bucket_means(points: &[Sample], (since, until): (i64, i64), n: usize) -> Vec<Option<f64>> {
    let span = (until - since).max(1) as f64;
    let mut sums = vec![(0.0f64, 0u32); n];
    for p in points.iter().filter(|p| p.at >= since && p.at < until) {
        let i = (((p.at - since) as f64 / span) * n as f64) as usize;
        let b = &mut sums[i.min(n - 1)];
        b.0 += p.value;
        b.1 += 1;
    }
    sums.iter()
        .map(|(s, c)| (*c > 0).then(|| s / *c as f64))
        .collect()
}

/// A line chart as SVG: points averaged into at most 240 buckets over `[since, until)`, broken where no
/// report came for longer than `max_gap_ms` (three report intervals). Only numbers and our own labels go in.
pub fn chart_svg(
    points: &[Sample],
    (since, until): (i64, i64),
    max_gap_ms: i64,
    (unit, from_label): (&str, &str),
    top: Option<f64>,
) -> String {
    const W: f64 = 600.0;
    const H: f64 = 150.0;
    const LEFT: f64 = 62.0;
    const BOTTOM: f64 = 18.0;
    const BUCKETS: usize = 240;
    let span = (until - since).max(1) as f64;
    let values = bucket_means(points, (since, until), BUCKETS);
    let max_seen = values.iter().flatten().cloned().fold(0.0f64, f64::max);
    let top = top.unwrap_or(if max_seen > 0.0 { max_seen * 1.15 } else { 1.0 });
    let x = |i: usize| LEFT + (i as f64 + 0.5) * (W - LEFT) / BUCKETS as f64;
    let y = |v: f64| (H - BOTTOM) - (v.clamp(0.0, top) / top) * (H - BOTTOM - 6.0);
    // Runs of buckets with data become polylines; a missing bucket breaks the line.
    let mut lines = String::new();
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, lines: &mut String| {
        if run.len() == 1 {
            // A lone point: a dot.
            let xy: Vec<&str> = run[0].split(',').collect();
            lines.push_str(&format!(
                r#"<circle cx="{}" cy="{}" r="2" fill="currentColor"/>"#,
                xy[0], xy[1]
            ));
        } else if run.len() > 1 {
            lines.push_str(&format!(
                r#"<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/>"#,
                run.join(" ")
            ));
        }
        run.clear();
    };
    let bucket_ms = span / BUCKETS as f64;
    let mut last: Option<usize> = None;
    for (i, v) in values.iter().enumerate() {
        let Some(v) = v else { continue };
        if last.is_some_and(|l| (i - l) as f64 * bucket_ms > max_gap_ms as f64) {
            flush(&mut run, &mut lines);
        }
        run.push(format!("{:.1},{:.1}", x(i), y(*v)));
        last = Some(i);
    }
    flush(&mut run, &mut lines);
    let grid: String = [0.0, 0.5, 1.0]
        .iter()
        .map(|f| {
            let v = top * f;
            format!(
                r##"<line x1="{LEFT}" x2="{W}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e6eb"/><text x="{tx}" y="{ty:.1}" font-size="10" text-anchor="end" fill="#667085">{label}</text>"##,
                y = y(v),
                tx = LEFT - 4.0,
                ty = y(v) + 3.0,
                label = askama_escape(&human(v, unit)),
            )
        })
        .collect();
    let empty = if values.iter().all(Option::is_none) {
        format!(
            r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#667085">no reports in this range</text>"##,
            (W + LEFT) / 2.0,
            H / 2.0
        )
    } else {
        String::new()
    };
    // What a screen reader says for the picture (the figure's caption names the metric).
    let summary = if values.iter().all(Option::is_none) {
        format!("no reports from {from_label} until now")
    } else {
        format!(
            "from {from_label} until now, highest {}",
            human(max_seen, unit)
        )
    };
    format!(
        r##"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{summary}" xmlns="http://www.w3.org/2000/svg">{grid}{lines}{empty}<text x="{LEFT}" y="{H}" font-size="10" fill="#667085">{from}</text><text x="{W}" y="{H}" font-size="10" text-anchor="end" fill="#667085">now</text></svg>"##,
        from = askama_escape(from_label),
        summary = askama_escape(&summary),
    )
}

/// A small line for a table row: percentages over `[since, until)` in 60 buckets, 0 to 100, gaps broken.
/// `label` says in words what it shows (for screen readers).
pub fn sparkline_svg(points: &[Sample], (since, until): (i64, i64), label: &str) -> String {
    const W: f64 = 120.0;
    const H: f64 = 28.0;
    const BUCKETS: usize = 60;
    let values = bucket_means(points, (since, until), BUCKETS);
    let mut lines = String::new();
    let mut run: Vec<String> = Vec::new();
    let mut flush = |run: &mut Vec<String>| {
        match run.len() {
            0 => {}
            1 => {
                let (x, y) = run[0].split_once(',').unwrap_or(("0", "0"));
                lines.push_str(&format!(
                    r#"<circle cx="{x}" cy="{y}" r="1.5" fill="currentColor"/>"#
                ));
            }
            _ => lines.push_str(&format!(
                r#"<polyline fill="none" stroke="currentColor" stroke-width="1.2" points="{}"/>"#,
                run.join(" ")
            )),
        }
        run.clear();
    };
    // A line goes on over a few empty buckets (collectors that report less often) and breaks at a gap
    // of ten minutes.
    let mut last: Option<usize> = None;
    for (i, v) in values.iter().enumerate() {
        let Some(v) = v else { continue };
        if last.is_some_and(|l| i - l > 10) {
            flush(&mut run);
        }
        last = Some(i);
        let v = v.clamp(0.0, 100.0);
        run.push(format!(
            "{:.1},{:.1}",
            (i as f64 + 0.5) * W / BUCKETS as f64,
            H - 1.0 - v / 100.0 * (H - 2.0)
        ));
    }
    flush(&mut run);
    format!(
        r##"<svg class="spark" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg"><line x1="0" x2="{W}" y1="{base}" y2="{base}" stroke="#e3e6eb"/>{lines}</svg>"##,
        base = H - 1.0,
        label = askama_escape(label),
    )
}

fn askama_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn view(
    state: &AppState,
    u: &Authed,
    server: &Server,
    range: &str,
    error: Option<&ApiError>,
    signing_secret: String,
) -> PageResult {
    let (range, range_label, span) = RANGES
        .iter()
        .find(|(k, _, _)| *k == range)
        .copied()
        .unwrap_or(RANGES[0]);
    let until = now_ms();
    let since = until - span;
    let names: Vec<String> = CHARTS.iter().map(|c| c.0.to_string()).collect();
    let view = state.domain.metrics(server, since, &names).await?;
    let latest = |m: &str| view.samples.iter().find(|s: &&MetricSample| s.metric == m);
    let charts = CHARTS
        .iter()
        .zip(&view.series)
        .map(|((metric, title, unit, top), series)| Chart {
            title,
            latest: latest(metric)
                .map(|s| human(s.value, unit))
                .unwrap_or_else(|| "–".into()),
            svg: chart_svg(
                &series.points,
                (since, until),
                3 * 1000 * view.interval_seconds.unwrap_or(60),
                (unit, &format!("{range_label} ago")),
                *top,
            ),
        })
        .collect();
    let services = view
        .samples
        .iter()
        .filter_map(|s| {
            s.metric
                .strip_prefix("service_up:")
                .map(|n| (n.to_string(), s.value > 0.5))
        })
        .collect();
    let channels_of_team = state.domain.channels(server.team_id).await?;
    let rules = state
        .domain
        .alerts(server)
        .await?
        .into_iter()
        .map(|r| RuleRow {
            description: describe_rule(&r),
            channel: r
                .channel_id
                .and_then(|id| channels_of_team.iter().find(|c| c.id == id))
                .map(|c| c.name.clone())
                .unwrap_or_else(|| "all of the team's".into()),
            rule: r,
        })
        .collect();
    let mut channels = Vec::new();
    for c in channels_of_team {
        let last = state
            .store
            .deliveries(c.id, 1)
            .await
            .ok()
            .and_then(|mut d| d.pop());
        channels.push((c, last));
    }
    let (nav, status) = Nav::server(u, server, "monitoring").with_result(error);
    Ok(render(
        &MonitoringPage {
            nav,
            server: server.clone(),
            installed: view.installed,
            last_report: view.last_report_at.map(ago).unwrap_or_default(),
            range,
            ranges: RANGES.iter().map(|(k, l, _)| (*k, *l)).collect(),
            charts,
            services,
            rules,
            channels,
            signing_secret,
        },
        status,
    ))
}

pub async fn monitoring_page(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Query(q): Query<BTreeMap<String, String>>,
) -> PageResult {
    let range = q.get("range").map(String::as_str).unwrap_or("1h");
    view(&state, &u, &server, range, None, String::new()).await
}

fn opt(f: &BTreeMap<String, String>, k: &str) -> Option<String> {
    f.get(k)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub async fn add_alert(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let value = match opt(&f, "value").map(|v| v.parse::<f64>()) {
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            let e = ApiError::invalid("value", "give a number");
            return view(&state, &u, &server, "1h", Some(&e), String::new()).await;
        }
        None => None,
    };
    let kind = opt(&f, "kind").unwrap_or_else(|| "metric".into());
    let metric_rule = kind == "metric";
    let below = opt(&f, "comparison").as_deref() == Some("below");
    let days = value
        .filter(|_| kind == "cert_expiring")
        .map(|d| d.round() as i64);
    let spec = AlertSpec {
        kind: Some(kind),
        metric: opt(&f, "metric").filter(|_| metric_rule),
        above: value.filter(|_| metric_rule && !below),
        below: value.filter(|_| metric_rule && below),
        for_duration: opt(&f, "for"),
        channel: opt(&f, "channel"),
        days,
    };
    match state.domain.add_alert(&server, &spec).await {
        Ok(_) => Ok(see_other(format!("/servers/{}/monitoring", server.id))),
        Err(e) => view(&state, &u, &server, "1h", Some(&e.into()), String::new()).await,
    }
}

pub async fn remove_alert(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, rule)): Path<(i64, i64)>,
) -> PageResult {
    match state.domain.remove_alert(&server, rule).await {
        Ok(()) => Ok(see_other(format!("/servers/{}/monitoring", server.id))),
        Err(e) => view(&state, &u, &server, "1h", Some(&e.into()), String::new()).await,
    }
}

pub async fn add_channel(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let spec = ChannelSpec {
        name: opt(&f, "name").unwrap_or_default(),
        kind: opt(&f, "kind").unwrap_or_default(),
        url: opt(&f, "url"),
        secret: opt(&f, "secret"),
        chat_id: opt(&f, "chat_id"),
    };
    match state.domain.add_channel(server.team_id, &spec).await {
        // A generated signing key is shown once, on this answer.
        Ok(new) => {
            view(
                &state,
                &u,
                &server,
                "1h",
                None,
                new.signing_secret.unwrap_or_default(),
            )
            .await
        }
        Err(e) => view(&state, &u, &server, "1h", Some(&e.into()), String::new()).await,
    }
}

pub async fn test_channel(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, name)): Path<(i64, String)>,
) -> PageResult {
    match state.domain.test_channel(server.team_id, &name).await {
        Ok(_) => Ok(see_other(format!("/servers/{}/monitoring", server.id))),
        Err(e) => view(&state, &u, &server, "1h", Some(&e.into()), String::new()).await,
    }
}

pub async fn remove_channel(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, name)): Path<(i64, String)>,
) -> PageResult {
    match state.domain.remove_channel(server.team_id, &name).await {
        Ok(()) => Ok(see_other(format!("/servers/{}/monitoring", server.id))),
        Err(e) => view(&state, &u, &server, "1h", Some(&e.into()), String::new()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts() {
        let pts: Vec<Sample> = (0..60)
            .map(|i| Sample {
                at: 1_000_000 + i * 60_000,
                value: i as f64,
            })
            .collect();
        let range = (1_000_000, 1_000_000 + 3_600_000);
        let svg = chart_svg(&pts, range, 180_000, ("%", "1 hour ago"), Some(100.0));
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{svg}"
        );
        assert!(!svg.contains("<circle") && !svg.contains("NaN"), "{svg}");
        // A silence longer than three intervals breaks the line in two.
        let gap: Vec<Sample> = pts
            .iter()
            .filter(|p| !(20.0..30.0).contains(&p.value))
            .cloned()
            .collect();
        let svg = chart_svg(&gap, range, 180_000, ("%", "1 hour ago"), Some(100.0));
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        let empty = chart_svg(&[], (0, 3_600_000), 180_000, ("%", "1 hour ago"), None);
        assert!(empty.contains("no reports"), "{empty}");
        assert_eq!(human(1_234_567.0, "B/s"), "1.2 MB/s");
        assert_eq!(human(42.0, "%"), "42 %");
    }
}
