//! Ingest mode: metrics from N simulated servers (a 20-line report each per simulated minute, the minutes
//! compressed to run back to back) posted over HTTP to the real `/ingest/metrics` with each server's token,
//! against a baseline of the same rows written with plain inserts (no HTTP, no token lookup) in the same
//! run. Then the database is filled to 24 simulated hours for up to 250 servers, rolled up, and its size, the
//! rollup time and the time to read a 30-day chart through the API are printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use brokeforge_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{http_request, peak_rss_mb, percentile};

/// Simulated minutes posted over HTTP (and written by the baseline).
const MINUTES: i64 = 5;
/// Servers whose whole simulated day is written for the size, rollup and chart figures.
const FILL_SERVERS: i64 = 250;
/// Requests in flight at once.
const CLIENTS: usize = 64;

/// A report like the collector's: 20 lines.
fn report(server: i64, minute: i64) -> Vec<(String, f64)> {
    let t = (server + minute) as f64;
    let mut lines: Vec<(String, f64)> = [
        "cpu_percent",
        "load1",
        "load5",
        "load15",
        "memory_used_percent",
        "memory_total_bytes",
        "swap_used_percent",
        "disk_used_percent",
        "disk_used_percent:/",
        "disk_used_percent:/var",
        "net_rx_bytes_per_second",
        "net_tx_bytes_per_second",
        "service_up:nginx",
        "service_up:php8.2-fpm",
        "service_up:mariadb",
        "service_up:redis-server",
    ]
    .iter()
    .enumerate()
    .map(|(i, m)| (m.to_string(), (t * (i + 1) as f64) % 97.0))
    .collect();
    for i in 0..4 {
        lines.push((format!("service_up:brokeforge-site-{i}"), 1.0));
    }
    lines
}

pub(super) fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 per second on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some((rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

async fn post(addr: &str, token: &str, body: &str) -> Result<u16> {
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "text/plain"),
    ];
    let (status, _) = http_request(addr, ("POST", "/ingest/metrics"), &headers, body).await?;
    Ok(status)
}

async fn database_mb(store: &Store) -> f64 {
    let pool = store.pool();
    let sqlite = brokeforge_store::raw_scalar_i64(
        pool,
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
    )
    .await;
    let bytes = match sqlite {
        Ok(b) => b,
        Err(_) => brokeforge_store::raw_scalar_i64(
            pool,
            "SELECT CAST(SUM(pg_total_relation_size(c.oid)) AS BIGINT) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
        )
        .await
        .unwrap_or(0),
    };
    bytes as f64 / 1e6
}

pub async fn ingest(store: &Store, servers: i64) -> Result<()> {
    // A server's reports are stamped when they arrive, a millisecond apart at least (one per series and
    // millisecond is kept). Here a server's next report is posted after one from every other server: with
    // fewer than this many servers two could arrive in the same millisecond, which real ones (a minute
    // apart) never do.
    if servers < 200 {
        bail!(
            "give at least 200 servers (--ingest-servers), so each server's reports are apart in time as in real use"
        );
    }
    let user = store.create_user("bench@example.com", "x", false).await?;
    let team = store.personal_team(user.id).await?;
    let now = brokeforge_core::time::now_ms();
    brokeforge_store::raw_execute(
        store.pool(),
        &format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {servers}) \
             INSERT INTO servers (user_id, name, public_ip, ssh_port, provision_status, connection_status, created_at, updated_at, team_id) \
             SELECT {}, 'ingest-' || x, '198.51.100.1', 22, 'provisioned', 'connected', {now}, {now}, {team} FROM c",
            user.id
        ),
    )
    .await?;
    let ids: Vec<i64> = store
        .servers_for_user(user.id)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    if ids.len() as i64 != servers {
        bail!("seeded {} servers, wanted {servers}", ids.len());
    }
    let tokens: Vec<String> = ids
        .iter()
        .map(|id| format!("bfm_bench_{id:08}_0123456789abcdef"))
        .collect();
    for (id, token) in ids.iter().zip(&tokens) {
        store.put_monitoring_agent(*id, token, 60).await?;
    }

    // Baseline: the same rows with plain inserts, as many at once as the clients below.
    let rows_per_report = report(0, 0).len();
    let reports = ids.len() * MINUTES as usize;
    let baseline = {
        let t = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let (store, ids, next) = (store.clone(), ids.clone(), next.clone());
            set.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ids.len() * MINUTES as usize {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let (server, minute) = (ids[i % ids.len()], (i / ids.len()) as i64);
                    store
                        .put_samples(
                            server,
                            now - 86_400_000 * 3 + minute * 60_000,
                            &report(server, minute),
                        )
                        .await?;
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        t.elapsed().as_secs_f64()
    };
    // Those rows were only for timing.
    brokeforge_store::raw_execute(store.pool(), "DELETE FROM metric_samples").await?;

    // The real path: HTTP, the token's hash looked up, the report parsed and written.
    let (addr, stop, server_task) = super::serve_app(store).await?;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (addr, ids, tokens, next) = (addr.clone(), ids.clone(), tokens.clone(), next.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ids.len() * MINUTES as usize {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let (k, minute) = (i % ids.len(), (i / ids.len()) as i64);
                let body: String = report(ids[k], minute)
                    .iter()
                    .map(|(m, v)| format!("{m} {v:.2}\n"))
                    .collect();
                let started = Instant::now();
                let status = post(&addr, &tokens[k], &body).await?;
                if status != 200 {
                    bail!("ingest answered {status}");
                }
                lat.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r??);
    }
    let ingest_s = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let peak = peak_rss_mb();
    lat.sort_by(|a, b| a.total_cmp(b));
    let stored =
        brokeforge_store::raw_scalar_i64(store.pool(), "SELECT COUNT(*) FROM metric_samples")
            .await?;
    if stored != (reports * rows_per_report) as i64 {
        bail!(
            "{stored} samples stored, {} sent",
            reports * rows_per_report
        );
    }

    // 24 simulated hours of up to FILL_SERVERS servers (a day of 1,000 took CI over four minutes; the
    // per-server cost is what matters), written by the database itself, then rolled up.
    let filled = servers.min(FILL_SERVERS);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    let last_filled = sorted[filled as usize - 1];
    let t = Instant::now();
    let day_start = now - 86_400_000;
    brokeforge_store::raw_execute(
        store.pool(),
        &format!(
            "WITH RECURSIVE m(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM m WHERE x < 1439) \
             INSERT INTO metric_samples (server_id, metric, at, value) \
             SELECT s.id, k.metric, {day_start} + m.x * 60000, (s.id + m.x) % 97 \
             FROM servers s CROSS JOIN m CROSS JOIN (SELECT DISTINCT metric FROM metric_samples) k WHERE s.team_id = {team} AND s.id <= {last_filled}"
        ),
    )
    .await?;
    let fill_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    while store.roll_up(600, now, 3_600_000).await? > 0 {}
    let upto = store.rolled_up_until(600).await?.unwrap_or(now);
    while store.roll_up(3600, upto, 24 * 3_600_000).await? > 0 {}
    let rollup_s = t.elapsed().as_secs_f64();
    let day_rows =
        brokeforge_store::raw_scalar_i64(store.pool(), "SELECT COUNT(*) FROM metric_samples")
            .await?;
    let db_mb = database_mb(store).await;
    let day_mb_all = db_mb * servers as f64 / filled as f64;

    // A 30-day chart of one server through the API (hourly rollups), and a 24-hour one (raw samples).
    let token = format!("bf_bench_{}", user.id);
    store
        .create_api_token(
            user.id,
            "bench",
            &brokeforge_domain::accounts::sha256_hex(&token),
            "bf_bench",
        )
        .await?;
    let chart = |since: &'static str| {
        let (addr, token, id) = (addr.clone(), token.clone(), sorted[0]);
        async move {
            let mut times = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                let mut s = tokio::net::TcpStream::connect(&addr).await?;
                s.write_all(format!(
                    "GET /api/v1/servers/{id}/metrics?since={since}&metrics=cpu_percent,memory_used_percent,disk_used_percent,load1,net_rx_bytes_per_second,net_tx_bytes_per_second HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
                ).as_bytes()).await?;
                let mut raw = Vec::new();
                s.read_to_end(&mut raw).await?;
                if !raw.starts_with(b"HTTP/1.0 200") && !raw.starts_with(b"HTTP/1.1 200") {
                    bail!(
                        "the {since} chart answered {}",
                        String::from_utf8_lossy(&raw[..raw.len().min(200)])
                    );
                }
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            Ok::<_, anyhow::Error>(percentile(&times, 0.5))
        }
    };
    let chart_30d = chart("30d").await?;
    let chart_24h = chart("24h").await?;
    stop.cancel();
    let _ = server_task.await;

    let rows = (reports * rows_per_report) as f64;
    println!(
        "ingest: {servers} servers x {MINUTES} simulated minutes, {rows_per_report} samples a report, {CLIENTS} clients"
    );
    println!(
        "  baseline plain inserts: {:.0} samples/s ({:.0} reports/s)",
        rows / baseline,
        reports as f64 / baseline
    );
    println!(
        "  /ingest/metrics over HTTP: {:.0} samples/s ({:.0} reports/s), p50 {:.2} ms, p99 {:.2} ms; ratio to baseline {:.2}",
        rows / ingest_s,
        reports as f64 / ingest_s,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        ingest_s / baseline
    );
    println!(
        "  one node's load for {servers} servers reporting every 60 s: {:.1} % of one core (CPU {:.2} s for {:.1} s of reports, client included); peak RSS {:.1} MB",
        cpu / (reports as f64 / servers as f64 * 60.0) * 100.0,
        cpu,
        reports as f64 / servers as f64 * 60.0,
        peak
    );
    println!(
        "  24 simulated hours of {filled} servers: {day_rows} raw samples written in {fill_s:.1} s, rolled up in {rollup_s:.1} s; database {db_mb:.0} MB (about {day_mb_all:.0} MB for a day of all {servers})"
    );
    println!(
        "  chart read through the API (6 series): 30 days {chart_30d:.1} ms, 24 hours {chart_24h:.1} ms (p50)"
    );
    Ok(())
}
