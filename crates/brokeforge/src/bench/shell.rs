//! The persistent-shell experiment (`--hosts FILE --shell-experiment`, #17 item 4): the same steps on every
//! host, first one `exec` per step (the floor), then through one long-lived shell per connection (the path jobs take)
//! (sentinel-delimited), in the same run; per-step cost of each, and whether each step's exit code, stdout
//! and stderr came back the same both ways.

use std::time::{Duration, Instant};

use anyhow::Result;
use brokeforge_ssh::{ExecRequest, SshSession, SshTarget};

/// Step `i`: output on both streams, and every fourth fails.
fn step(i: usize) -> String {
    format!(
        "echo out-{i}; echo err-{i} >&2; exit {}",
        if i % 4 == 3 { 1 } else { 0 }
    )
}

type Seen = Vec<(Option<u32>, String, String)>;

async fn by_exec(t: SshTarget, steps: usize) -> Result<Seen> {
    let s = SshSession::connect(&t).await?;
    let mut seen = Vec::new();
    for i in 0..steps {
        let cmd = step(i);
        let out = s
            .exec(ExecRequest::new(&cmd, Duration::from_secs(60)))
            .await?;
        seen.push((out.exit_code, out.stdout_text(), out.stderr_text()));
    }
    s.close().await;
    Ok(seen)
}

async fn by_shell(t: SshTarget, steps: usize) -> Result<Seen> {
    let s = SshSession::connect(&t).await?;
    let mut sh = s.open_shell().await?;
    let mut seen = Vec::new();
    for i in 0..steps {
        let cmd = step(i);
        let out = sh
            .run(ExecRequest::new(&cmd, Duration::from_secs(60)))
            .await?;
        seen.push((out.exit_code, out.stdout_text(), out.stderr_text()));
    }
    sh.close().await;
    s.close().await;
    Ok(seen)
}

/// Both ways on every host at once; (wall seconds, what each host saw, errors).
async fn phase<F, Fut>(targets: &[SshTarget], steps: usize, f: F) -> (f64, Vec<Seen>, usize)
where
    F: Fn(SshTarget, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Seen>> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = targets
        .iter()
        .map(|t| tokio::spawn(f(t.clone(), steps)))
        .collect();
    let (mut seen, mut errors) = (Vec::new(), 0);
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => seen.push(s),
            Ok(Err(e)) => {
                eprintln!("shell experiment: {e}");
                errors += 1;
                seen.push(Vec::new());
            }
            Err(_) => {
                errors += 1;
                seen.push(Vec::new());
            }
        }
    }
    (started.elapsed().as_secs_f64(), seen, errors)
}

pub(super) async fn shell_experiment(targets: Vec<SshTarget>, steps: usize) -> Result<()> {
    // Twice each, alternating, so neither way always runs on a warmer machine; the better of two counts.
    let mut exec_best = f64::MAX;
    let mut shell_best = f64::MAX;
    let (mut mismatches, mut errors) = (0usize, 0usize);
    for _ in 0..2 {
        let (exec_wall, exec_seen, e1) = phase(&targets, steps, by_exec).await;
        let (shell_wall, shell_seen, e2) = phase(&targets, steps, by_shell).await;
        exec_best = exec_best.min(exec_wall);
        shell_best = shell_best.min(shell_wall);
        errors += e1 + e2;
        mismatches += exec_seen
            .iter()
            .zip(&shell_seen)
            .map(|(a, b)| {
                a.iter().zip(b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len())
            })
            .sum::<usize>();
        // And both are right: the exit code and output each step asked for.
        for seen in &exec_seen {
            for (i, got) in seen.iter().enumerate() {
                let want = (
                    Some(u32::from(i % 4 == 3)),
                    format!("out-{i}\n"),
                    format!("err-{i}\n"),
                );
                mismatches += usize::from(got != &want);
            }
        }
    }
    let per = |wall: f64| wall * 1000.0 / steps as f64;
    println!(
        "shell_experiment hosts={} steps={steps} exec_wall_s={exec_best:.3} shell_wall_s={shell_best:.3} \
         exec_per_step_ms={:.2} shell_per_step_ms={:.2} ratio_shell_to_exec={:.3} mismatches={mismatches} errors={errors}",
        targets.len(),
        per(exec_best),
        per(shell_best),
        shell_best / exec_best.max(1e-9),
    );
    if mismatches + errors > 0 {
        anyhow::bail!("{mismatches} mismatched steps, {errors} errors");
    }
    Ok(())
}
