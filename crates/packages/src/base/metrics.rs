//! What this process's workers did, for `/metrics`: counters kept in memory as jobs end (Prometheus adds them
//! up across nodes), so a scrape never aggregates the whole job history in the database.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Upper bounds (seconds) of the job duration histogram's buckets.
pub const JOB_DURATION_BUCKETS_S: &[u64] = &[1, 5, 30, 120, 600, 1800];

/// Jobs of one kind that ended one way, and how long they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobHistogram {
    /// Cumulative counts per bucket of [`JOB_DURATION_BUCKETS_S`].
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_ms: u64,
}

#[derive(Default)]
pub struct JobMetrics {
    by: Mutex<BTreeMap<(String, &'static str), JobHistogram>>,
}

impl JobMetrics {
    /// A job of `kind` ended with `status` (`done`, `failed`, `cancelled`) after `ms`.
    pub fn record(&self, kind: &str, status: &'static str, ms: u64) {
        let mut by = self.by.lock().unwrap_or_else(|e| e.into_inner());
        let h = by
            .entry((kind.to_string(), status))
            .or_insert_with(|| JobHistogram {
                buckets: vec![0; JOB_DURATION_BUCKETS_S.len()],
                ..Default::default()
            });
        h.count += 1;
        h.sum_ms += ms;
        for (i, b) in JOB_DURATION_BUCKETS_S.iter().enumerate() {
            if ms <= b * 1000 {
                h.buckets[i] += 1;
            }
        }
    }

    /// Every (kind, status) seen, with its histogram.
    pub fn snapshot(&self) -> Vec<((String, &'static str), JobHistogram)> {
        let by = self.by.lock().unwrap_or_else(|e| e.into_inner());
        by.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// This process's job counters.
pub static JOBS: std::sync::LazyLock<JobMetrics> = std::sync::LazyLock::new(JobMetrics::default);
