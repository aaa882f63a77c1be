//! Recipe mode (`--hosts FILE --recipe`): one recipe run on every host through the API, timed from the
//! request to the run's end, with a watcher polling the run the way its live page does; and, in the same
//! run, the bare baseline: the same script on each host over one russh exec, in the same waves (the canary
//! alone, then `parallel` at a time), nothing stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use brokeforge_packages::jobs::{Worker, WorkerConfig};
use brokeforge_ssh::{ExecRequest, SshSession, SshTarget};
use brokeforge_store::{JobStatus, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{http_request, peak_rss_mb, serve_app};

/// The script every server runs: a few lines of output, the server's name among them.
fn script(lines: usize) -> String {
    format!("for i in $(seq 1 {lines}); do echo \"line $i on $BROKEFORGE_SERVER\"; done\n")
}

/// One HTTP/1.0 request with the bearer token; status and JSON body.
async fn api(
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = format!("Bearer {token}");
    let (status, answer) = http_request(
        addr,
        (method, &format!("/api/v1{path}")),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await?;
    Ok((
        status,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    ))
}

/// How the baseline reaches a host.
#[derive(Clone, Copy)]
enum Way {
    /// One exec with the script on stdin: the bare floor.
    Exec,
    /// What a recipe job does over SSH, without the store: a shell that stops the job's leftovers and takes
    /// the server's lock, then the script as a tagged step (the SSH half of the full path's cost).
    JobShell,
}

/// The baseline: the script on each host (one connection, then `way`), the canary first, then `parallel` at
/// a time. Errors: failed runs and output without the expected lines.
async fn baseline(
    targets: &[(SshTarget, String)],
    body: &str,
    lines: usize,
    canary: usize,
    parallel: usize,
    way: Way,
) -> usize {
    let one = |t: SshTarget, name: String| {
        let body = body.to_string();
        async move {
            let s = SshSession::connect(&t).await?;
            let command = format!("BROKEFORGE_SERVER={name} bash -s");
            let mut req = ExecRequest::new(&command, Duration::from_secs(120));
            req.stdin = Some(body.as_bytes());
            let out = match way {
                Way::Exec => s.exec(req).await?,
                Way::JobShell => {
                    let tag = format!("bench-{name}");
                    let stop = brokeforge_ssh::stop_prelude(&tag)?;
                    let lock = format!("/tmp/brokeforge-bench-{name}.lock");
                    let start = brokeforge_ssh::ShellStart {
                        tag: Some(&tag),
                        prelude: Some(&stop),
                        lock: Some(&lock),
                        cancel: None,
                    };
                    let (mut sh, _) = s.start_shell(start, || {}).await?;
                    req.tag = Some(&tag);
                    let out = sh.run(req).await?;
                    sh.close().await;
                    out
                }
            };
            s.close().await;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok::<_, brokeforge_ssh::SshError>(usize::from(
                !out.success() || text.lines().count() != lines || !text.contains(&name),
            ))
        }
    };
    let mut errors = 0;
    let canary = canary.min(targets.len());
    for (t, name) in &targets[..canary] {
        errors += one(t.clone(), name.clone()).await.unwrap_or(1);
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for (t, name) in &targets[canary..] {
        let (sem, fut) = (sem.clone(), one(t.clone(), name.clone()));
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            fut.await
        }));
    }
    for t in tasks {
        errors += match t.await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                eprintln!("baseline: {e}");
                1
            }
            Err(_) => 1,
        };
    }
    errors
}

pub(super) struct RecipeBench<'a> {
    pub store: &'a Store,
    /// Each host's target (pinned) and the name its server has in the store.
    pub targets: Vec<(SshTarget, String)>,
    pub owner: brokeforge_store::User,
    pub lines: usize,
    pub parallel: usize,
    pub canary: usize,
}

pub(super) async fn recipe(b: RecipeBench<'_>) -> Result<()> {
    let store = b.store;
    let hosts = b.targets.len();
    let body = script(b.lines);
    let cpu = super::ingest::cpu_seconds();
    let started = Instant::now();
    let mut baseline_errors =
        baseline(&b.targets, &body, b.lines, b.canary, b.parallel, Way::Exec).await;
    let bare = started.elapsed().as_secs_f64();
    let baseline_cpu = super::ingest::cpu_seconds() - cpu;
    let ssh_started = Instant::now();
    baseline_errors += baseline(
        &b.targets,
        &body,
        b.lines,
        b.canary,
        b.parallel,
        Way::JobShell,
    )
    .await;
    let ssh_path = ssh_started.elapsed().as_secs_f64();
    let baseline = bare;

    // The full path: the web app, a worker and the run ticker in this process, as `serve` has them.
    let (addr, stop_web, web_task) = serve_app(store).await?;
    let token = format!("bf_bench_{}", b.owner.id);
    store
        .create_api_token(
            b.owner.id,
            "bench",
            &brokeforge_domain::accounts::sha256_hex(&token),
            "bf_bench",
        )
        .await?;
    let (status, made) = api(
        &addr,
        &token,
        "POST",
        "/recipes",
        Some(json!({"name": "bench", "script": body, "user": "brokeforge"})),
    )
    .await?;
    if status != 201 {
        bail!("creating the recipe: {status} {made}");
    }
    let stop = CancellationToken::new();
    let worker = Worker::new(
        store.clone(),
        brokeforge_packages::registry(),
        WorkerConfig {
            id: "bench".into(),
            concurrency: b.parallel.max(b.canary),
            ..WorkerConfig::default()
        },
    );
    let worker_task = tokio::spawn(worker.run(stop.clone()));
    let domain = brokeforge_domain::Domain::new(store.clone());
    let ticker = {
        let (domain, stop) = (domain.clone(), stop.clone());
        tokio::spawn(async move { domain.run_recipe_runs(stop).await })
    };

    let cpu = super::ingest::cpu_seconds();
    let started = Instant::now();
    let started_ms = brokeforge_core::time::now_ms();
    let (status, run) = api(
        &addr,
        &token,
        "POST",
        "/recipes/bench/runs",
        Some(json!({"all": true, "parallel": b.parallel, "canary": b.canary, "max_failures": 0})),
    )
    .await?;
    if status != 202 && status != 201 {
        bail!("starting the run: {status} {run}");
    }
    let run_id = run["run"]["id"]
        .as_i64()
        .with_context(|| format!("no run id in {run}"))?;
    // The live page: the run read from the API every second until it ends (what its script does).
    let polls = Arc::new(AtomicUsize::new(0));
    let page = {
        let (addr, token, polls) = (addr.clone(), token.clone(), polls.clone());
        tokio::spawn(async move {
            let mut slowest = 0f64;
            loop {
                let t = Instant::now();
                let (status, view) = api(
                    &addr,
                    &token,
                    "GET",
                    &format!("/recipe-runs/{run_id}"),
                    None,
                )
                .await?;
                slowest = slowest.max(t.elapsed().as_secs_f64() * 1000.0);
                polls.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    bail!("the run's page: {status} {view}");
                }
                if !matches!(view["run"]["status"].as_str(), Some("running")) {
                    return Ok::<_, anyhow::Error>((view, slowest));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let run = loop {
        let finished = store.job_finished_notify().notified();
        tokio::pin!(finished);
        finished.as_mut().enable();
        let run = store.recipe_run(run_id).await?;
        if run.status != "running" {
            break run;
        }
        if Instant::now() > deadline {
            bail!("the run did not end within 10 minutes");
        }
        let _ = tokio::time::timeout(Duration::from_millis(20), finished).await;
    };
    let full = started.elapsed().as_secs_f64();
    let full_cpu = super::ingest::cpu_seconds() - cpu;
    let (view, slowest_poll_ms) = page.await??;
    stop.cancel();
    worker_task.await??;
    let _ = ticker.await;
    stop_web.cancel();
    let _ = web_task.await;

    let rows = store.recipe_run_servers(run_id).await?;
    let done = rows.iter().filter(|r| r.state == "done").count();
    let mut last_done_ms = 0;
    // Where the time goes, from the request (ms): each job's queueing, start and end.
    let (mut queued, mut began, mut took) = (Vec::new(), Vec::new(), Vec::new());
    for r in &rows {
        if let Some(id) = r.job_id {
            let job = store.job(id).await?;
            if job.status == JobStatus::Done {
                last_done_ms = last_done_ms.max(job.finished_at.unwrap_or(0) - started_ms);
            }
            queued.push((job.created_at - started_ms) as f64);
            if let (Some(s), Some(f)) = (job.started_at, job.finished_at) {
                began.push((s - started_ms) as f64);
                took.push((f - s) as f64);
            }
        }
    }
    if let Some(id) = rows.first().and_then(|r| r.job_id) {
        let c = store.job(id).await?;
        println!(
            "canary_ms: queued={} started={} finished={}",
            c.created_at - started_ms,
            c.started_at.unwrap_or(0) - started_ms,
            c.finished_at.unwrap_or(0) - started_ms
        );
    }
    for v in [&mut queued, &mut began, &mut took] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    let pct = |v: &[f64], p: f64| super::percentile(v, p);
    println!(
        "timeline_ms: queued p50={:.0} max={:.0}; started p50={:.0} max={:.0}; job p50={:.0} p99={:.0} max={:.0}",
        pct(&queued, 0.5),
        pct(&queued, 1.0),
        pct(&began, 0.5),
        pct(&began, 1.0),
        pct(&took, 0.5),
        pct(&took, 0.99),
        pct(&took, 1.0),
    );
    let errors = (hosts - done) + baseline_errors;
    println!(
        "recipe hosts={hosts} lines={} parallel={} canary={} backend={:?} run={} status={} page_polls={} page_saw={} \
         cpu_s_baseline={baseline_cpu:.2} cpu_s_full={full_cpu:.2}",
        b.lines,
        b.parallel,
        b.canary,
        store.backend(),
        run.id,
        run.status,
        polls.load(Ordering::Relaxed),
        view["run"]["status"].as_str().unwrap_or("?"),
    );
    println!(
        "recipe_ssh_path_wall_s={ssh_path:.3} ssh_path_ratio={:.3} (the job's SSH work alone: shell, lock, tagged script)",
        ssh_path / baseline.max(1e-9)
    );
    println!(
        "recipe_baseline_wall_s={baseline:.3} recipe_full_wall_s={full:.3} last_server_done_s={:.3} ratio={:.3} slowest_page_poll_ms={slowest_poll_ms:.1} peak_rss_mb={:.1} errors={errors}",
        last_done_ms as f64 / 1000.0,
        full / baseline.max(1e-9),
        peak_rss_mb()
    );
    if errors > 0 {
        bail!("{errors} errors ({done} of {hosts} servers done)");
    }
    Ok(())
}
