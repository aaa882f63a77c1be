//! `brokeforge bench`: numbers, not timed tests.
//!
//! Fleet mode runs a synthetic plan of N steps on every host through the real path (enqueue, claim, execute
//! over SSH, events in a real store) and, in the same run, the bare baseline (one russh connection per host,
//! the same N commands, no store). Queue mode measures claiming and finishing no-op jobs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use brokeforge_core::{CredentialKind, Secret};
use brokeforge_packages::Package;
use brokeforge_packages::jobs::{Worker, WorkerConfig};
use brokeforge_packages::services::NoopJob;
use brokeforge_packages::services::server::synthetic::SyntheticPlan;
use brokeforge_ssh::{ExecRequest, HostKeyPolicy, SshSession, SshTarget};
use brokeforge_store::{JobStatus, MasterKey, NewJob, NewServer, Store};
use clap::Args;
use tokio_util::sync::CancellationToken;

mod download;
mod history;
mod ingest;
mod recipe;
mod shell;

#[derive(Args)]
pub struct BenchArgs {
    /// Hosts file: `HOST PORT` per line (`#` comments allowed).
    #[arg(long, requires_all = ["user", "key"])]
    hosts: Option<PathBuf>,
    /// SSH user on every host.
    #[arg(long)]
    user: Option<String>,
    /// Private key file (OpenSSH format) for that user.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Steps (milestone + command) per host.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Jobs run at once (default: one per host).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Queue mode: claim and finish this many no-op jobs.
    #[arg(long, conflicts_with = "hosts")]
    queue_jobs: Option<usize>,
    /// Queue mode: workers claiming at once.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// SSE mode: this many watchers follow one server's live stream over HTTP while a job's events and output
    /// are written; reports delivery latency against a single watcher measured in the same run.
    #[arg(long, conflicts_with_all = ["hosts", "queue_jobs"])]
    sse_watchers: Option<usize>,
    /// SSE mode: rows (milestones and output lines) the job writes.
    #[arg(long, default_value_t = 200)]
    sse_events: usize,
    /// History mode: time the pages and API routes on a panel with this many servers (and a long history)
    /// against a small panel in the same run; prints p50/p99 per route and the peak RSS.
    #[arg(long, conflicts_with_all = ["hosts", "queue_jobs", "sse_watchers"])]
    history_servers: Option<i64>,
    /// History mode: event and output rows to seed (a tenth on one busy server).
    #[arg(long, default_value_t = 2_000_000)]
    history_rows: i64,
    /// Ingest mode: this many simulated servers push metrics reports to `/ingest/metrics` against plain
    /// inserts in the same run; then 24 simulated hours, rollups, database size and chart read times.
    #[arg(long, conflicts_with_all = ["hosts", "queue_jobs", "sse_watchers", "history_servers"])]
    ingest_servers: Option<i64>,
    /// With --hosts: instead of the synthetic plan, one recipe run on every host through the API (`--steps`
    /// output lines each), timed from the request to the run's end with its live page polled, against the
    /// same script over bare SSH in the same waves.
    #[arg(long, requires = "hosts")]
    recipe: bool,
    /// Recipe mode: servers at a time after the canary (at most 100, as for any run).
    #[arg(long, default_value_t = 100, requires = "recipe")]
    parallel: usize,
    /// Recipe mode: servers that run first, alone.
    #[arg(long, default_value_t = 1, requires = "recipe")]
    canary: usize,
    /// With --hosts: the persistent-shell experiment: `--steps` steps per host by one exec each, then through
    /// one long-lived shell per connection; per-step cost of both and whether the results match.
    #[arg(long, requires = "hosts", conflicts_with = "recipe")]
    shell_experiment: bool,
    /// With --hosts: afterwards, stream this many MiB off the first host the way a snapshot download goes,
    /// against a bare exec of the same bytes, sampling resident memory (it must stay within 50 MB).
    #[arg(long, requires = "hosts")]
    download_mib: Option<u64>,
    /// Database for the run (default: a fresh SQLite file in a temporary directory). A PostgreSQL URL gets a
    /// fresh schema that is dropped afterwards.
    #[arg(long)]
    database_url: Option<String>,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let (store, cleanup) = bench_store(args.database_url.as_deref()).await?;
    if let Some(n) = args.ingest_servers {
        let result = ingest::ingest(&store, n.max(1)).await;
        store.close().await;
        cleanup.finish().await;
        return result;
    }
    let result = match (
        &args.hosts,
        args.queue_jobs,
        args.sse_watchers,
        args.history_servers,
    ) {
        (Some(hosts), None, None, None) => fleet(&args, hosts, &store).await,
        (None, Some(n), None, None) => queue(&store, n, args.workers.max(1)).await,
        (None, None, Some(n), None) => sse(&store, n.max(1), args.sse_events.max(1)).await,
        (None, None, None, Some(n)) => {
            history::history(&store, n.max(2), args.history_rows.max(1000)).await
        }
        _ => bail!(
            "give either --hosts FILE --user USER --key KEYFILE, --queue-jobs N, --sse-watchers N or --history-servers N"
        ),
    };
    store.close().await;
    cleanup.finish().await;
    result
}

struct Cleanup {
    _dir: Option<tempfile::TempDir>,
    drop_schema: Option<(String, String)>,
}

impl Cleanup {
    async fn finish(self) {
        if let Some((url, schema)) = self.drop_schema
            && let Ok(pool) = sqlx_any_connect(&url).await
        {
            let _ = brokeforge_store::raw_execute(&pool, &format!("DROP SCHEMA {schema} CASCADE"))
                .await;
            pool.close().await;
        }
    }
}

async fn sqlx_any_connect(url: &str) -> Result<brokeforge_store::AnyPool> {
    brokeforge_store::connect_raw(url).await.context("connect")
}

async fn bench_store(url: Option<&str>) -> Result<(Store, Cleanup)> {
    let key = MasterKey::generate()?;
    match url {
        None => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            Ok((
                Store::open(&url, &key).await?,
                Cleanup {
                    _dir: Some(dir),
                    drop_schema: None,
                },
            ))
        }
        Some(url) if url.starts_with("sqlite://") => Ok((
            Store::open(url, &key).await?,
            Cleanup {
                _dir: None,
                drop_schema: None,
            },
        )),
        Some(url) => {
            let mut suffix = [0u8; 4];
            getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
            let schema = format!("bf_bench_{:08x}", u32::from_le_bytes(suffix));
            let pool = sqlx_any_connect(url).await?;
            brokeforge_store::raw_execute(&pool, &format!("CREATE SCHEMA {schema}")).await?;
            pool.close().await;
            let sep = if url.contains('?') { '&' } else { '?' };
            let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
            let store = Store::open(&scoped, &key).await?;
            Ok((
                store,
                Cleanup {
                    _dir: None,
                    drop_schema: Some((url.to_string(), schema)),
                },
            ))
        }
    }
}

fn read_hosts(path: &PathBuf) -> Result<Vec<(String, u16)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hosts = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(host), port) = (parts.next(), parts.next()) else {
            continue;
        };
        let host =
            brokeforge_core::validate::host(host).with_context(|| format!("line {}", n + 1))?;
        let port = match port {
            Some(p) => brokeforge_core::validate::port(
                p.parse().with_context(|| format!("line {}: port", n + 1))?,
            )?,
            None => 22,
        };
        hosts.push((host, port));
    }
    if hosts.is_empty() {
        bail!("{} lists no hosts", path.display());
    }
    Ok(hosts)
}

/// The web app in this process on a loopback port: its address, the token that stops it, and its task.
async fn serve_app(
    store: &Store,
) -> Result<(
    String,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    use brokeforge_web::{AppState, WebConfig};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let stop = CancellationToken::new();
    let state = AppState::new(store.clone(), WebConfig::default());
    let s = stop.clone();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            brokeforge_web::router(state)
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { s.cancelled().await })
        .await
    });
    Ok((addr, stop, task))
}

fn peak_rss_mb() -> f64 {
    proc_status_mb("VmHWM:")
}

/// A memory figure of this process from /proc/self/status (`VmHWM:` peak, `VmRSS:` now), in MB.
fn proc_status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn fleet(args: &BenchArgs, hosts_file: &PathBuf, store: &Store) -> Result<()> {
    let hosts = read_hosts(hosts_file)?;
    let user = args.user.clone().unwrap_or_default();
    let key_path = args.key.clone().unwrap_or_default();
    let key = Secret::new(
        std::fs::read_to_string(&key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?,
    );
    let steps = args.steps.max(1);
    let concurrency = args.concurrency.unwrap_or(hosts.len()).max(1);
    let target = |host: &str, port: u16, policy: HostKeyPolicy| SshTarget {
        host: host.to_string(),
        port,
        user: user.clone(),
        key: key.clone(),
        host_key: policy,
        connect_timeout: Duration::from_secs(30),
    };

    // Learn each host's key once (the benchmark's own trust on first use) and warm up sshd.
    let mut fingerprints = Vec::new();
    for chunk in hosts.chunks(concurrency) {
        let mut tasks = Vec::new();
        for (h, p) in chunk {
            let t = target(h, *p, HostKeyPolicy::TrustOnFirstUse);
            tasks.push(tokio::spawn(async move {
                let s = SshSession::connect(&t).await?;
                let fp = s.host_key_fingerprint().to_string();
                s.close().await;
                Ok::<_, brokeforge_ssh::SshError>(fp)
            }));
        }
        for t in tasks {
            fingerprints.push(t.await?.context("warm-up connection")?);
        }
    }

    if args.shell_experiment {
        let targets = hosts
            .iter()
            .zip(&fingerprints)
            .map(|((h, p), fp)| target(h, *p, HostKeyPolicy::Pinned(fp.clone())))
            .collect();
        return shell::shell_experiment(targets, steps).await;
    }
    if args.recipe {
        let (owner, _) = add_servers(store, &hosts, &fingerprints, &user, &key).await?;
        let targets = hosts
            .iter()
            .zip(&fingerprints)
            .enumerate()
            .map(|(i, ((h, p), fp))| {
                (
                    target(h, *p, HostKeyPolicy::Pinned(fp.clone())),
                    format!("bench-{i}"),
                )
            })
            .collect();
        return recipe::recipe(recipe::RecipeBench {
            store,
            targets,
            owner,
            lines: steps,
            parallel: args.parallel.max(1),
            canary: args.canary,
        })
        .await;
    }

    // Baseline: one connection per host, the same commands, nothing stored.
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ((h, p), fp) in hosts.iter().zip(&fingerprints) {
        let t = target(h, *p, HostKeyPolicy::Pinned(fp.clone()));
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let s = SshSession::connect(&t).await?;
            let mut errors = 0usize;
            for _ in 0..steps {
                let out = s
                    .exec(ExecRequest::new("true", Duration::from_secs(60)))
                    .await?;
                errors += usize::from(!out.success());
            }
            s.close().await;
            Ok::<_, brokeforge_ssh::SshError>(errors)
        }));
    }
    let mut baseline_errors = 0;
    for t in tasks {
        match t.await? {
            Ok(e) => baseline_errors += e,
            Err(e) => {
                eprintln!("baseline: {e}");
                baseline_errors += 1;
            }
        }
    }
    let baseline = started.elapsed().as_secs_f64();

    // Full path: servers in a real store, one job per host, workers claim and run them.
    let (_, server_ids) = add_servers(store, &hosts, &fingerprints, &user, &key).await?;
    let stop = CancellationToken::new();
    let worker = Worker::new(
        store.clone(),
        brokeforge_packages::registry(),
        WorkerConfig {
            id: "bench".into(),
            concurrency,
            ..WorkerConfig::default()
        },
    );
    let started = Instant::now();
    let worker_task = tokio::spawn(worker.run(stop.clone()));
    for id in &server_ids {
        store
            .enqueue(&NewJob::new(
                SyntheticPlan::JOB,
                Some(*id),
                SyntheticPlan::payload(steps, 0),
            ))
            .await?;
    }
    wait_finished(store, server_ids.len() as i64).await?;
    let full = started.elapsed().as_secs_f64();
    stop.cancel();
    worker_task.await??;

    let failed = store.count_jobs(JobStatus::Failed).await? as usize;
    let errors = failed + baseline_errors;
    let ratio = full / baseline.max(1e-9);
    let per_step_ms = (full - baseline) * 1000.0 / steps as f64;
    println!(
        "hosts={} steps={} concurrency={concurrency} backend={:?}",
        hosts.len(),
        steps,
        store.backend()
    );
    println!(
        "baseline: {baseline:.3} s ({:.2} ms per command per host); full path: {full:.3} s",
        baseline * 1000.0 / steps as f64
    );
    println!(
        "baseline_wall_s={baseline:.3} full_wall_s={full:.3} ratio={ratio:.3} per_step_overhead_ms={per_step_ms:.3} peak_rss_mb={:.1} errors={errors}",
        peak_rss_mb()
    );
    if errors > 0 {
        bail!("{errors} errors");
    }
    if let Some(mib) = args.download_mib {
        let (h, p) = &hosts[0];
        download::download(
            store,
            server_ids[0],
            target(h, *p, HostKeyPolicy::Pinned(fingerprints[0].clone())),
            mib,
        )
        .await?;
    }
    Ok(())
}

/// The hosts as servers of one user (`bench-0`, `bench-1`, ...) with their pinned keys and the fleet
/// user's key as their `brokeforge` credential, provisioned and connected as the servers of a fleet under
/// management are (a first connection's status change is onboarding's cost, not a recipe's); the user and
/// the servers' ids.
async fn add_servers(
    store: &Store,
    hosts: &[(String, u16)],
    fingerprints: &[String],
    user: &str,
    key: &Secret,
) -> Result<(brokeforge_store::User, Vec<i64>)> {
    let owner = store
        .create_user("bench@brokeforge.invalid", "!", false)
        .await?;
    let mut server_ids = Vec::new();
    for (i, ((h, p), fp)) in hosts.iter().zip(fingerprints).enumerate() {
        let server = store
            .create_server(&NewServer {
                user_id: owner.id,
                name: format!("bench-{i}"),
                public_ip: h.clone(),
                ssh_port: *p,
                host_key_fingerprint: Some(fp.clone()),
            })
            .await?;
        store
            .put_credential_as(server.id, CredentialKind::User, Some(user), "bench", key)
            .await?;
        store
            .set_provision_status(server.id, brokeforge_core::ProvisionStatus::Provisioned)
            .await?;
        store
            .set_connection_status(server.id, brokeforge_core::ConnectionStatus::Connected)
            .await?;
        server_ids.push(server.id);
    }
    Ok((owner, server_ids))
}

/// Wait until `total` jobs are finished, woken as each finishes. Counting is throttled to one query per 5 ms,
/// so the waiting does not load the database it measures.
async fn wait_finished(store: &Store, total: i64) -> Result<()> {
    let mut last_check: Option<Instant> = None;
    loop {
        let notified = store.job_finished_notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if last_check.is_none_or(|t| t.elapsed() >= Duration::from_millis(5)) {
            last_check = Some(Instant::now());
            if store.count_finished_jobs().await? >= total {
                return Ok(());
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
    }
}

async fn queue(store: &Store, jobs: usize, workers: usize) -> Result<()> {
    for _ in 0..jobs {
        store
            .enqueue(&NewJob::new(NoopJob::KIND, None, serde_json::Value::Null))
            .await?;
    }
    let stop = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let worker = Worker::new(
            store.clone(),
            brokeforge_packages::registry(),
            WorkerConfig {
                id: format!("bench-{w}"),
                concurrency: 1,
                ..WorkerConfig::default()
            },
        );
        tasks.push(tokio::spawn(worker.run(stop.clone())));
    }
    wait_finished(store, jobs as i64).await?;
    let wall = started.elapsed().as_secs_f64();
    stop.cancel();
    for t in tasks {
        t.await??;
    }
    let done = store.count_jobs(JobStatus::Done).await?;
    let rate = done as f64 / wall;
    println!(
        "queue backend={:?} workers={workers} jobs={jobs} done={done} wall_s={wall:.3} jobs_per_s={rate:.0} peak_rss_mb={:.1} errors={}",
        store.backend(),
        peak_rss_mb(),
        jobs as i64 - done
    );
    if done != jobs as i64 {
        bail!("{} jobs did not finish", jobs as i64 - done);
    }
    Ok(())
}

fn current_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One watcher: an HTTP/1.0 SSE connection; records how long each row took from write to arrival.
async fn sse_watcher(
    addr: String,
    token: String,
    path: String,
    expect: usize,
    ready: tokio::sync::mpsc::Sender<()>,
    deadline: tokio::time::Instant,
) -> Result<Vec<f64>> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut s = tokio::net::TcpStream::connect(&addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut lines = BufReader::new(s).lines();
    let mut latencies = Vec::with_capacity(expect);
    let mut rows = std::collections::HashSet::with_capacity(expect);
    let mut announced = false;
    while latencies.len() < expect {
        // One deadline for the whole stream, not per line: keep-alive comments would renew a per-line one.
        let Some(line) = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .map_err(|_| anyhow::anyhow!("deadline passed after {} rows", latencies.len()))??
        else {
            bail!("stream closed after {} rows", latencies.len());
        };
        if !announced && line.is_empty() {
            // Headers are through: the stream is open.
            announced = true;
            let _ = ready.send(()).await;
        }
        // A completed milestone repeats its start's timestamp: only first deliveries count.
        if line.contains("\"status\":\"completed\"") {
            continue;
        }
        let number_after = |key: &str| -> Option<i64> {
            let i = line.find(key)?;
            let digits: String = line[i + key.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            digits.parse().ok()
        };
        if let (Some(row), Some(sent)) = (number_after("row="), number_after("sent_us=")) {
            if !rows.insert(row) {
                bail!("row {row} was delivered twice");
            }
            latencies.push((now_us() - sent) as f64 / 1000.0);
        }
    }
    Ok(latencies)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A phase: `watchers` follow the stream while `events` rows are written (a milestone, then output lines, as
/// a job's executor writes them). Returns sorted latencies in ms.
async fn sse_phase(
    store: &Store,
    addr: &str,
    token: &str,
    server_id: i64,
    watchers: usize,
    events: usize,
) -> Result<Vec<f64>> {
    let head = store.activity_head(server_id).await?;
    let path = format!("/api/v1/servers/{server_id}/stream?after={head}");
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(watchers);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        tasks.push(tokio::spawn(sse_watcher(
            addr.to_string(),
            token.to_string(),
            path.clone(),
            events,
            ready_tx.clone(),
            deadline,
        )));
    }
    // Only the watchers hold senders now: a watcher that fails before its stream opens ends the wait with
    // its error instead of leaving the benchmark waiting for a readiness that never comes.
    drop(ready_tx);
    for _ in 0..watchers {
        let opened = tokio::time::timeout_at(deadline, ready_rx.recv()).await;
        if !matches!(opened, Ok(Some(()))) {
            for t in tasks {
                t.await??;
            }
            bail!("a watcher's stream did not open");
        }
    }
    // A job's writes: a milestone every 10 rows, output lines between, ~200 rows/s.
    let mut previous = None;
    for i in 0..events {
        // `row=` tells rows apart (a duplicate delivery shows), `sent_us=` times them.
        let mark = format!("row={i} sent_us={}", now_us());
        if i % 10 == 0 {
            let ev = store
                .advance_event(
                    previous.as_ref(),
                    &brokeforge_store::NewEvent {
                        server_id,
                        job_id: None,
                        attempt: None,
                        service_type: brokeforge_core::ServiceType::Server,
                        provision_type: brokeforge_core::ProvisionType::Install,
                        milestone: format!("step_{i}"),
                        label: mark,
                        current_step: (i / 10 + 1) as i64,
                        total_steps: events.div_ceil(10) as i64,
                        details: serde_json::json!({}),
                    },
                )
                .await?;
            previous = Some(ev);
            // The completed previous milestone is a row too; it carries no timestamp of its own.
        } else {
            store
                .append_log(
                    server_id,
                    None,
                    previous.as_ref().map(|e| e.id),
                    brokeforge_store::LogStream::Stdout,
                    &format!("line {i} {mark}\n"),
                )
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    Ok(all)
}

async fn sse(store: &Store, watchers: usize, events: usize) -> Result<()> {
    let (addr, stop, server_task) = serve_app(store).await?;
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
    let server = store
        .create_server(&brokeforge_store::NewServer {
            user_id: user.id,
            name: "watched".into(),
            public_ip: "203.0.113.1".into(),
            ssh_port: 22,
            host_key_fingerprint: None,
        })
        .await?;
    let rss_before = current_rss_mb();
    let base = sse_phase(store, &addr, &token, server.id, 1, events).await?;
    let rss_idle = current_rss_mb();
    let started = Instant::now();
    let many = sse_phase(store, &addr, &token, server.id, watchers, events).await?;
    let wall = started.elapsed().as_secs_f64();
    let rss_after = current_rss_mb();
    stop.cancel();
    let _ = server_task.await;
    let (b50, b99) = (percentile(&base, 0.5), percentile(&base, 0.99));
    let (m50, m99) = (percentile(&many, 0.5), percentile(&many, 0.99));
    let expected = watchers * events;
    println!(
        "sse backend={:?} watchers={watchers} events={events} delivered={} wall_s={wall:.2} \
         baseline_1_watcher_p50_ms={b50:.2} p99_ms={b99:.2} watchers_p50_ms={m50:.2} p99_ms={m99:.2} \
         ratio_p50={:.2} ratio_p99={:.2} rss_mb_start={rss_before:.1} rss_mb_one={rss_idle:.1} rss_mb_all={rss_after:.1} peak_rss_mb={:.1}",
        store.backend(),
        many.len(),
        m50 / b50.max(0.001),
        m99 / b99.max(0.001),
        peak_rss_mb()
    );
    if many.len() != expected {
        bail!(
            "{} of {expected} rows were not delivered",
            expected - many.len()
        );
    }
    Ok(())
}

/// One HTTP/1.0 request to the panel under test, on a raw socket (a client library's own costs stay out of
/// the figures): the status and the answer's body. HTTP/1.0 closes the connection after the answer, so it is
/// read to its end.
async fn http_request(
    addr: &str,
    (method, path): (&str, &str),
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .with_context(|| format!("{method} {path} took over a minute"))??;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let status = String::from_utf8_lossy(&raw[..head_end])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, raw[head_end..].to_vec()))
}
