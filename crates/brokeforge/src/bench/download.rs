//! Download mode (with `--hosts`): stream N MiB off the first host through the path a snapshot download
//! takes (`Executor::stream`: one SSH command, its stdout over a bounded channel to a reader slower than
//! the network), against a bare russh exec of the same bytes measured in the same run, and sample the
//! process's resident memory throughout: it must stay flat, whatever N.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use brokeforge_core::CredentialKind;
use brokeforge_packages::{Executor, RunContext};
use brokeforge_ssh::{ExecRequest, SshSession, SshTarget};
use brokeforge_store::Store;

fn rss_mb() -> f64 {
    super::proc_status_mb("VmRSS:")
}

pub async fn download(store: &Store, server_id: i64, target: SshTarget, mib: u64) -> Result<()> {
    let command = format!("head -c {} /dev/zero", mib << 20);
    // Baseline: the bytes over a bare connection, kept nowhere (max_output 0).
    let s = SshSession::connect(&target).await?;
    let started = Instant::now();
    let out = s
        .exec(ExecRequest {
            max_output: 0,
            ..ExecRequest::new(&command, Duration::from_secs(3600))
        })
        .await?;
    let baseline = started.elapsed().as_secs_f64();
    s.close().await;
    if !out.success() {
        bail!("baseline download failed: {}", out.stderr_text());
    }

    let before = rss_mb();
    let peak = std::sync::Arc::new(std::sync::Mutex::new(before));
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (peak, stop) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let now = rss_mb();
                {
                    let mut p = peak.lock().unwrap();
                    *p = p.max(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let executor = Executor::new(store.clone());
    let ctx = RunContext::new(store.server(server_id).await?);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let started = Instant::now();
    // A reader slower than the network (a pause every 4 MiB), as a browser on a slow link is: the
    // producer must wait for it instead of buffering.
    let reader = tokio::spawn(async move {
        let (mut total, mut since_pause) = (0u64, 0u64);
        while let Some(chunk) = rx.recv().await {
            total += chunk.len() as u64;
            since_pause += chunk.len() as u64;
            if since_pause >= 4 << 20 {
                since_pause = 0;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        total
    });
    executor
        .stream(
            &ctx,
            CredentialKind::User,
            &command,
            None,
            Vec::new(),
            Duration::from_secs(3600),
            &tx,
        )
        .await?;
    drop(tx);
    let received = reader.await?;
    let full = started.elapsed().as_secs_f64();
    sampling.cancel();
    sampler.await?;
    let peak = *peak.lock().unwrap();
    if received != mib << 20 {
        bail!("received {received} bytes of {}", mib << 20);
    }
    println!(
        "download mib={mib} baseline_s={baseline:.2} ({:.0} MiB/s) streamed_s={full:.2} ({:.0} MiB/s, slowed reader) rss_before_mb={before:.1} rss_peak_mb={peak:.1} extra_mb={:.1}",
        mib as f64 / baseline,
        mib as f64 / full,
        peak - before
    );
    if peak - before > 50.0 {
        bail!("memory grew by {:.1} MB while streaming", peak - before);
    }
    Ok(())
}
