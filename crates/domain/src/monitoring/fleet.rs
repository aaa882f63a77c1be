//! The fleet at a glance: for a page of servers, each one's CPU over the last hour, its newest memory and
//! fullest-disk figures, whether it reports, and how many rules fire, in a handful of statements.

use std::collections::HashMap;

use brokeforge_core::time::now_ms;
use brokeforge_store::Sample;

use super::SILENCE_MS;
use crate::{Domain, DomainResult};

/// How far back the fleet view's CPU line goes.
pub const FLEET_SPAN_MS: i64 = 3600 * 1000;

#[derive(Debug, Clone, Default)]
pub struct FleetHealth {
    /// CPU use over the last hour, oldest first.
    pub cpu: Vec<Sample>,
    pub memory_percent: Option<f64>,
    /// The fullest mount's use.
    pub disk_percent: Option<f64>,
    /// The collector has not reported for three intervals.
    pub silent: bool,
    pub firing: i64,
}

impl Domain {
    /// Health of the servers among `server_ids` that are monitored or have firing rules (others are left
    /// out).
    pub async fn fleet_health(
        &self,
        server_ids: &[i64],
    ) -> DomainResult<HashMap<i64, FleetHealth>> {
        let now = now_ms();
        let mut out: HashMap<i64, FleetHealth> = HashMap::new();
        for agent in self.store.monitoring_agents_of(server_ids).await? {
            let fresh = SILENCE_MS.max(3 * agent.interval_secs * 1000);
            let last = agent.last_seen_at.unwrap_or(agent.created_at);
            out.insert(
                agent.server_id,
                FleetHealth {
                    silent: now - last > fresh,
                    ..Default::default()
                },
            );
        }
        let monitored: Vec<i64> = out.keys().copied().collect();
        let since = now - FLEET_SPAN_MS;
        for (id, s) in self
            .store
            .samples_of(&monitored, "cpu_percent", since)
            .await?
        {
            out.entry(id).or_default().cpu.push(s);
        }
        // The newest figures: the last sample of the last ten minutes (the collector sends the fullest
        // disk as disk_used_percent).
        for metric in ["memory_used_percent", "disk_used_percent"] {
            for (id, s) in self
                .store
                .samples_of(&monitored, metric, now - 10 * 60 * 1000)
                .await?
            {
                let h = out.entry(id).or_default();
                match metric {
                    "memory_used_percent" => h.memory_percent = Some(s.value),
                    _ => h.disk_percent = Some(s.value),
                }
            }
        }
        // Rules fire on unmonitored servers too (a failed job, a certificate).
        for (id, n) in self.store.firing_counts(server_ids).await? {
            out.entry(id).or_default().firing = n;
        }
        Ok(out)
    }
}
