//! The dashboard: the user's servers at a glance.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::common::*;
use crate::auth::Authed;
use crate::state::AppState;

// ---- dashboard ----

pub struct ServerRow {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub connection: String,
    pub address: String,
    pub os: String,
    pub services: String,
    pub last_activity: String,
    pub team: String,
    /// Monitoring, when the server reports or has firing rules.
    pub health: Option<HealthCell>,
    /// The first sites with their newest deployment, and how many more there are.
    pub sites: Vec<SiteCell>,
    pub more_sites: usize,
}

/// A site in the fleet overview.
pub struct SiteCell {
    pub id: i64,
    pub domain: String,
    /// The newest deployment's status (a badge class) and when; empty when it was never deployed.
    pub status: String,
    pub when: String,
}

/// Sites shown per server on the dashboard.
const SITES_SHOWN: usize = 3;

/// The fleet view of one server: CPU over the last hour, newest memory and disk use, and its state.
pub struct HealthCell {
    /// Server-built SVG (numbers and our own words only).
    pub spark: String,
    pub figures: String,
    /// ok | firing | silent (a badge class)
    pub state: &'static str,
    pub label: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct Dashboard {
    pub nav: Nav,
    pub servers: Vec<ServerRow>,
    pub teams: Vec<TeamChip>,
    /// The team shown (`None`: all).
    pub team: Option<i64>,
    pub first_page: bool,
    /// The cursor of the next page, when there is one.
    pub next: Option<i64>,
    /// The filter as typed.
    pub search: String,
}

/// Servers per dashboard page.
const PAGE: i64 = 100;

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct DashboardQuery {
    after: Option<i64>,
    /// Show one team's servers.
    team: Option<i64>,
    /// Part of a name or an address, or a tag.
    q: Option<String>,
}

/// A team in the switcher.
pub struct TeamChip {
    pub id: i64,
    pub name: String,
    pub current: bool,
}

fn health_cell(h: &brokeforge_domain::monitoring::FleetHealth, now: i64) -> HealthCell {
    let pct = |v: Option<f64>| v.map(|v| format!("{v:.0} %")).unwrap_or_else(|| "–".into());
    let cpu_now = h.cpu.last().map(|s| s.value);
    let (state, label) = if h.firing > 0 {
        (
            "firing",
            format!(
                "{} alert{} firing",
                h.firing,
                if h.firing == 1 { "" } else { "s" }
            ),
        )
    } else if h.silent {
        ("silent", "not reporting".to_string())
    } else {
        ("ok", "ok".to_string())
    };
    HealthCell {
        spark: super::monitoring::sparkline_svg(
            &h.cpu,
            (now - brokeforge_domain::monitoring::FLEET_SPAN_MS, now),
            &format!("CPU over the last hour, now {}", pct(cpu_now)),
        ),
        figures: format!(
            "CPU {} · memory {} · disk {}",
            pct(cpu_now),
            pct(h.memory_percent),
            pct(h.disk_percent)
        ),
        state,
        label,
    }
}

pub async fn dashboard(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<DashboardQuery>,
    parts: Parts,
) -> PageResult {
    let Some(u) = parts.extensions.get::<Authed>().cloned() else {
        if state.store.count_users().await? == 0 {
            return Ok(see_other("/setup"));
        }
        return Ok(see_other("/login"));
    };
    // A page of servers in three statements: the servers, their services, each one's newest event.
    let search = q.q.clone().unwrap_or_default();
    let filter = brokeforge_store::ServerFilter {
        search: Some(search.as_str()),
        team: q.team,
        ..Default::default()
    };
    let page = state
        .domain
        .servers_page(&u.user, q.after.unwrap_or(0), PAGE, &filter)
        .await?;
    let teams = state.domain.teams(&u.user).await?;
    let team_name = |id: i64| {
        teams
            .iter()
            .find(|(t, _)| t.id == id)
            .map(|(t, _)| {
                if t.personal_of.is_some() {
                    "personal".to_string()
                } else {
                    t.name.clone()
                }
            })
            .unwrap_or_default()
    };
    let ids: Vec<i64> = page.iter().map(|(s, _)| s.id).collect();
    let mut latest: std::collections::HashMap<i64, _> = state
        .store
        .latest_events_of(&ids)
        .await?
        .into_iter()
        .map(|e| (e.server_id, e))
        .collect();
    let mut health = state.domain.fleet_health(&ids).await?;
    let mut sites: std::collections::HashMap<i64, Vec<SiteCell>> = Default::default();
    for site in state.store.sites_with_last_deployment(&ids).await? {
        let (status, when) = match site.last_deployment {
            Some((status, at)) => (status, ago(at)),
            None => (String::new(), "never deployed".into()),
        };
        sites.entry(site.server_id).or_default().push(SiteCell {
            id: site.id,
            domain: site.domain,
            status,
            when,
        });
    }
    let now = brokeforge_core::time::now_ms();
    let next = (page.len() as i64 == PAGE).then(|| ids.last().copied().unwrap_or_default());
    let mut rows = Vec::new();
    for (s, services) in page {
        let last = latest
            .remove(&s.id)
            .map(|e| format!("{} · {}", e.label, ago(e.updated_at)))
            .unwrap_or_else(|| format!("added {}", ago(s.created_at)));
        rows.push(ServerRow {
            id: s.id,
            name: s.name.clone(),
            status: s.provision_status.as_str().into(),
            connection: s.connection_status.as_str().into(),
            address: format!("{}:{}", s.public_ip, s.ssh_port),
            os: s.os.clone().unwrap_or_else(|| "—".into()),
            services: services
                .iter()
                .map(|x| x.service_name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            last_activity: last,
            team: team_name(s.team_id),
            health: health.remove(&s.id).map(|h| health_cell(&h, now)),
            more_sites: sites
                .get(&s.id)
                .map_or(0, |v| v.len().saturating_sub(SITES_SHOWN)),
            sites: sites
                .remove(&s.id)
                .unwrap_or_default()
                .into_iter()
                .take(SITES_SHOWN)
                .collect(),
        });
    }
    Ok(render(
        &Dashboard {
            nav: Nav::of(&u, "Servers"),
            servers: rows,
            teams: teams
                .iter()
                .map(|(t, _)| TeamChip {
                    id: t.id,
                    name: if t.personal_of.is_some() {
                        "personal".into()
                    } else {
                        t.name.clone()
                    },
                    current: q.team == Some(t.id),
                })
                .collect(),
            team: q.team,
            first_page: q.after.is_none(),
            next,
            search,
        },
        StatusCode::OK,
    ))
}
