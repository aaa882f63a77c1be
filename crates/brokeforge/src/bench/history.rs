//! History mode: how the pages and the API hold up on a panel with a long history. The same routes are timed
//! first on a small panel, then after seeding a large one (by default 1,000 servers and 2M event and output
//! rows, a tenth on one busy server) into the same database; the figures, the ratio to the small panel and
//! the peak RSS while serving are printed. Seeding is done by the database itself (a recursive CTE), so the
//! process memory measured is the web app's.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use brokeforge_store::Store;

use super::{http_request, peak_rss_mb, percentile};

/// Jobs per server in the seeded history.
const JOBS_PER_SERVER: i64 = 20;
/// Requests per route and phase.
const SAMPLES: usize = 40;
/// The goal per route (p99), printed next to each figure.
const GOAL_P99_MS: f64 = 50.0;
const GOAL_RSS_MB: f64 = 100.0;

/// Insert `servers` servers with 3 services and [`JOBS_PER_SERVER`] finished jobs each, and `rows` rows
/// (a fifth events, the rest output), a tenth of them on the first new server. Returns that busy server's id.
async fn seed(store: &Store, user_id: i64, servers: i64, rows: i64, tag: &str) -> Result<i64> {
    let pool = store.pool();
    let now = brokeforge_core::time::now_ms();
    // Every number below is ours: formatted into the SQL, nothing to quote.
    let exec = |sql: String| async move {
        brokeforge_store::raw_execute(pool, &sql)
            .await
            .with_context(|| sql.chars().take(120).collect::<String>())
    };
    // In the user's personal team, like every server a user adds.
    let team = store.personal_team(user_id).await?;
    exec(format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {servers}) \
         INSERT INTO servers (user_id, name, public_ip, ssh_port, provision_status, connection_status, created_at, updated_at, team_id) \
         SELECT {user_id}, '{tag}-' || x, '198.51.100.1', 22, 'provisioned', 'connected', {now}, {now}, {team} FROM c"
    ))
    .await?;
    let first_server = store
        .servers_for_user(user_id)
        .await?
        .into_iter()
        .find(|s| s.name == format!("{tag}-1"))
        .context("the seeded servers are missing")?
        .id;
    exec(format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {} - 1) \
         INSERT INTO server_services (server_id, service_name, service_type, configuration, status, created_at, updated_at) \
         SELECT {first_server} + x / 3, CASE x % 3 WHEN 0 THEN 'webserver' WHEN 1 THEN 'mariadb' ELSE 'redis' END, \
         CASE x % 3 WHEN 0 THEN 'webserver' ELSE 'database' END, '{{}}', 'active', {now}, {now} FROM c",
        servers * 3
    ))
    .await?;
    exec(format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {} - 1) \
         INSERT INTO jobs (kind, server_id, payload, status, attempt, max_attempts, run_at, cancel_requested, created_at, updated_at, started_at, finished_at) \
         SELECT 'server_provision', {first_server} + x / {JOBS_PER_SERVER}, '{{}}', 'done', 1, 1, {now}, 0, {now}, {now}, {now}, {now} FROM c",
        servers * JOBS_PER_SERVER
    ))
    .await?;
    let first_job = first_job_of(store, first_server).await?;
    // Row x belongs to the busy server when x % 10 = 0, else to one of the others in turn; to one of its
    // server's jobs; and is x ms younger than the one before (ids grow with time, as in real life).
    let owner = |x: &str| {
        format!("CASE WHEN {x} % 10 = 0 OR {servers} = 1 THEN 0 ELSE 1 + {x} % ({servers} - 1) END")
    };
    let events = rows / 5;
    let logs = rows - events;
    exec(format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {events} - 1), \
         o(x, s) AS (SELECT x, {} FROM c) \
         INSERT INTO provision_events (server_id, job_id, service_type, provision_type, milestone, label, current_step, total_steps, details, status, error, created_at, updated_at) \
         SELECT {first_server} + s, {first_job} + s * {JOBS_PER_SERVER} + (x / 10) % {JOBS_PER_SERVER}, 'server', 'install', \
         'step_' || (x % 12), 'Step ' || (x % 12), 1 + x % 12, 12, '{{}}', 'completed', NULL, {now} - {events} + x, {now} - {events} + x FROM o",
        owner("x")
    ))
    .await?;
    exec(format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {logs} - 1), \
         o(x, s) AS (SELECT x, {} FROM c) \
         INSERT INTO command_logs (server_id, job_id, event_id, stream, chunk, created_at) \
         SELECT {first_server} + s, {first_job} + s * {JOBS_PER_SERVER} + (x / 10) % {JOBS_PER_SERVER}, NULL, 'stdout', \
         'Setting up package ' || x || ' (1.2.3-4) ... done
', {now} - {logs} + x FROM o",
        owner("x")
    ))
    .await?;
    if store.backend() == brokeforge_store::Backend::Postgres {
        exec("ANALYZE".into()).await?;
    }
    Ok(first_server)
}

/// One HTTP/1.0 GET; status and body size.
/// A GET with one header (`Name: value`, or none when empty): the status and the body's size.
async fn get(addr: &str, path: &str, header: &str) -> Result<(u16, usize)> {
    let headers: Vec<(&str, &str)> = header.split_once(": ").into_iter().collect();
    let (status, body) = http_request(addr, ("GET", path), &headers, "").await?;
    Ok((status, body.len()))
}

struct Route {
    name: &'static str,
    path: String,
    header: String,
}

/// Time every route; (name, p50 ms, p99 ms, bytes).
async fn time_routes(addr: &str, routes: &[Route]) -> Result<Vec<(String, f64, f64, usize)>> {
    let mut out = Vec::new();
    for r in routes {
        let mut ms = Vec::with_capacity(SAMPLES);
        let mut size = 0;
        // One untimed request first: caches warm as they would on a running panel.
        get(addr, &r.path, &r.header).await?;
        for _ in 0..SAMPLES {
            let t = Instant::now();
            let (status, bytes) = get(addr, &r.path, &r.header).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!("{} ({}) answered {status}", r.name, r.path);
            }
            size = bytes;
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        out.push((
            r.name.to_string(),
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            size,
        ));
    }
    Ok(out)
}

fn routes(busy: i64, quiet: i64, busy_job: i64, session: &str, token: &str) -> Vec<Route> {
    let page = format!("Cookie: bf_session={session}");
    let api = format!("Authorization: Bearer {token}");
    let r = |name, path: String, header: &String| Route {
        name,
        path,
        header: header.clone(),
    };
    vec![
        r("dashboard", "/".into(), &page),
        r("busy_server_page", format!("/servers/{busy}"), &page),
        r("quiet_server_page", format!("/servers/{quiet}"), &page),
        // The workspace area with the most in it: 30 jobs and the event timeline.
        r(
            "busy_server_activity",
            format!("/servers/{busy}/activity"),
            &page,
        ),
        r("job_page", format!("/jobs/{busy_job}"), &page),
        r("api_servers", "/api/v1/servers".into(), &api),
        r(
            "api_busy_events",
            format!("/api/v1/servers/{busy}/events"),
            &api,
        ),
        r(
            "api_busy_events_1000",
            format!("/api/v1/servers/{busy}/events?limit=1000"),
            &api,
        ),
        r(
            "api_busy_jobs",
            format!("/api/v1/servers/{busy}/jobs"),
            &api,
        ),
        r(
            "api_job_logs",
            format!("/api/v1/jobs/{busy_job}/logs"),
            &api,
        ),
        r("metrics", "/metrics".into(), &String::new()),
        r("health", "/health".into(), &String::new()),
    ]
}

pub async fn history(store: &Store, servers: i64, rows: i64) -> Result<()> {
    let (addr, stop, server_task) = super::serve_app(store).await?;
    let user = store.create_user("bench@example.com", "x", false).await?;
    let token = format!("bf_bench_{}", user.id);
    store
        .create_api_token(
            user.id,
            "bench",
            &brokeforge_domain::accounts::sha256_hex(&token),
            "bf_bench",
        )
        .await?;
    let session = format!("bench-session-{}", user.id);
    store
        .create_session(
            user.id,
            &brokeforge_domain::accounts::sha256_hex(&session),
            "csrf",
            3_600_000,
            "127.0.0.1",
            "bench",
        )
        .await?;

    // The small panel: the same shape, a hundredth of the size.
    let small_servers = (servers / 100).max(2);
    let small_rows = (rows / 100).max(1000);
    let busy = seed(store, user.id, small_servers, small_rows, "small").await?;
    let small = time_routes(
        &addr,
        &routes(
            busy,
            busy + 1,
            first_job_of(store, busy).await?,
            &session,
            &token,
        ),
    )
    .await?;

    let t = Instant::now();
    let busy = seed(store, user.id, servers, rows, "large").await?;
    let seed_s = t.elapsed().as_secs_f64();
    // Peak RSS from here on: the app serving the large panel.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let large = time_routes(
        &addr,
        &routes(
            busy,
            busy + 1,
            first_job_of(store, busy).await?,
            &session,
            &token,
        ),
    )
    .await?;
    let peak = peak_rss_mb();
    stop.cancel();
    let _ = server_task.await;
    // One round of background pruning on the large panel (default retention: the busy server is over its
    // per-server limits).
    let domain = brokeforge_domain::Domain::new(store.clone());
    let mut cursor = 0;
    let t = Instant::now();
    let mut removed = 0;
    while let Ok(p) = domain
        .prune(
            &brokeforge_domain::maintenance::Retention::default(),
            &mut cursor,
        )
        .await
    {
        removed += p.history.total();
        if cursor == 0 {
            break;
        }
    }
    let prune_s = t.elapsed().as_secs_f64();

    println!(
        "history backend={:?} servers={} rows={} seed_s={seed_s:.1} (baseline: {small_servers} servers, {small_rows} rows, same run)",
        store.backend(),
        servers + small_servers,
        rows + small_rows
    );
    let mut over = Vec::new();
    for ((name, p50, p99, bytes), (_, b50, b99, _)) in large.iter().zip(&small) {
        let verdict = if *p99 <= GOAL_P99_MS { "ok" } else { "OVER" };
        if *p99 > GOAL_P99_MS {
            over.push(name.clone());
        }
        println!(
            "history route={name:<22} p50_ms={p50:>7.2} p99_ms={p99:>7.2} baseline_p50_ms={b50:>6.2} baseline_p99_ms={b99:>6.2} \
             ratio_p99={:>5.2} bytes={bytes:<8} goal_p99_ms={GOAL_P99_MS} {verdict}",
            p99 / b99.max(0.01)
        );
    }
    println!(
        "history prune_all_servers_s={prune_s:.1} rows_removed={removed} (per-server limits, default retention)"
    );
    println!(
        "history peak_rss_mb={peak:.1} goal_rss_mb={GOAL_RSS_MB} {} routes_over_goal={}",
        if peak <= GOAL_RSS_MB { "ok" } else { "OVER" },
        if over.is_empty() {
            "none".to_string()
        } else {
            over.join(",")
        }
    );
    Ok(())
}

async fn first_job_of(store: &Store, server_id: i64) -> Result<i64> {
    store
        .recent_jobs(server_id, JOBS_PER_SERVER)
        .await?
        .last()
        .map(|j| j.id)
        .context("the seeded server has no jobs")
}
