//! `brokeforge doctor`: what is wrong with this installation and how to fix it. Reads only: it neither
//! migrates nor creates anything. Exit status 1 when something needs fixing.

use anyhow::Result;
use brokeforge_core::time::now_ms;
use brokeforge_store::{Backend, Store};

use crate::config;

struct Report {
    problems: usize,
}

impl Report {
    fn ok(&self, what: &str, detail: impl AsRef<str>) {
        println!("ok       {what}: {}", detail.as_ref());
    }
    fn warn(&self, what: &str, detail: impl AsRef<str>) {
        println!("warning  {what}: {}", detail.as_ref());
    }
    fn problem(&mut self, what: &str, detail: impl AsRef<str>) {
        self.problems += 1;
        println!("PROBLEM  {what}: {}", detail.as_ref());
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

/// Free space where the data directory is (from `df`, which every Debian has), in MiB.
fn free_mib(path: &std::path::Path) -> Option<u64> {
    let mut dir = path.to_path_buf();
    while !dir.exists() {
        dir = dir.parent()?.to_path_buf();
    }
    let out = std::process::Command::new("df")
        .args(["-Pk", "--"])
        .arg(&dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib / 1024)
}

pub async fn doctor() -> Result<bool> {
    let mut r = Report { problems: 0 };

    // Web settings and TLS.
    let insecure = env("BROKEFORGE_INSECURE_PROVISIONING").as_deref() == Some("1");
    match env("BROKEFORGE_PUBLIC_URL") {
        None => r.warn(
            "public URL",
            "BROKEFORGE_PUBLIC_URL is not set: links and the one-line script use the address browsers call; set it to https://YOUR-NAME",
        ),
        Some(u) if u.starts_with("https://") => r.ok("public URL", &u),
        Some(u) if insecure => r.warn(
            "public URL",
            format!("{u} is plain HTTP and BROKEFORGE_INSECURE_PROVISIONING=1 hands the root script out over it (test networks only)"),
        ),
        Some(u) => r.problem(
            "public URL",
            format!("{u} is not https://: the one-line script is refused; serve HTTPS (BROKEFORGE_TLS_CERT/KEY or BROKEFORGE_TLS=acme)"),
        ),
    }
    match crate::tls::TlsMode::from_env() {
        Err(e) => r.problem("TLS", format!("{e:#}")),
        Ok(crate::tls::TlsMode::Off) => r.warn(
            "TLS",
            "BrokeForge serves plain HTTP (fine behind a TLS proxy)",
        ),
        Ok(crate::tls::TlsMode::Acme(_)) => r.ok("TLS", "certificate from an ACME authority"),
        Ok(crate::tls::TlsMode::Files { cert, key }) => {
            match (std::fs::read(&cert), std::fs::read(&key)) {
                (Ok(c), Ok(k)) => match crate::tls::certified_key(&c, &k) {
                    Ok(_) => r.ok(
                        "TLS",
                        format!("certificate {} and its key load", cert.display()),
                    ),
                    Err(e) => r.problem(
                        "TLS",
                        format!("{} / {}: {e:#}", cert.display(), key.display()),
                    ),
                },
                (Err(e), _) => r.problem("TLS", format!("cannot read {}: {e}", cert.display())),
                (_, Err(e)) => r.problem("TLS", format!("cannot read {}: {e}", key.display())),
            }
        }
    }

    // Disk.
    let data = config::data_dir();
    match free_mib(&data) {
        Some(m) if m < 1024 => r.problem(
            "disk",
            format!("{m} MiB free where {} is: free some space (history grows; backups of BrokeForge need room)", data.display()),
        ),
        Some(m) => r.ok("disk", format!("{m} MiB free where {} is", data.display())),
        None => r.warn("disk", format!("cannot tell the free space of {}", data.display())),
    }

    // The database, its schema and the master key.
    let url = config::database_url();
    let shown = brokeforge_store::redact_url(&url);
    let key = match config::master_key_if_present() {
        Ok(Some(k)) => Some(k),
        Ok(None) => {
            r.problem(
                "master key",
                format!("none: set BROKEFORGE_MASTER_KEY or put master.key in {} (a new one cannot read existing secrets)", data.display()),
            );
            None
        }
        Err(e) => {
            r.problem("master key", format!("{e:#}"));
            None
        }
    };
    let Some(key) = key else {
        return finish(r);
    };
    let store = match Store::connect(&url, &key).await {
        Ok(s) => s,
        Err(e) => {
            r.problem("database", format!("cannot connect to {shown}: {e}"));
            return finish(r);
        }
    };
    r.ok("database", format!("{shown} answers"));
    match store.migration_state().await {
        Ok((None, _)) => r.warn("schema", "empty database: `brokeforge migrate` (or serve) creates it"),
        Ok((Some(v), latest)) if v > latest => r.problem(
            "schema",
            format!("migrated by a newer BrokeForge (schema {v}, this binary knows {latest}): run that release or a newer one"),
        ),
        Ok((Some(v), latest)) if v < latest => r.warn(
            "schema",
            format!("schema {v}, this binary brings {latest}: `brokeforge migrate` (serve does it on start)"),
        ),
        Ok((Some(v), _)) => r.ok("schema", format!("up to date (schema {v})")),
        Err(e) => r.problem("schema", format!("{e}")),
    }
    match store.verify_master_key().await {
        Ok(()) => r.ok("master key", "opens this database's secrets"),
        Err(e) => {
            let staged = data.join("master.key.new");
            if staged.exists() {
                r.problem(
                    "master key",
                    format!(
                        "{e}; a rotation stopped after it committed: finish it with `mv {} {}`",
                        staged.display(),
                        data.join("master.key").display()
                    ),
                )
            } else {
                r.problem("master key", format!("{e}"))
            }
        }
    }
    if store.backend() == Backend::Postgres {
        match store.database_time_ms().await {
            Ok(db) => {
                let skew = (db - now_ms()).abs();
                if skew > 2_000 {
                    r.problem("clock", format!("this machine and PostgreSQL differ by {:.1} s: leases and schedules need one time (run timesyncd/chrony on both)", skew as f64 / 1000.0));
                } else {
                    r.ok("clock", format!("within {skew} ms of PostgreSQL"));
                }
            }
            Err(e) => r.warn("clock", format!("cannot read PostgreSQL's time: {e}")),
        }
    }
    match store.queue_health(now_ms(), 60_000).await {
        Ok((queued, running, stale)) if stale > 0 => r.problem(
            "workers",
            format!("{stale} of {running} running job(s) hold a lease that ended over a minute ago: no worker is running (start `brokeforge serve` or `brokeforge worker`); {queued} queued"),
        ),
        Ok((queued, running, _)) => r.ok("workers", format!("{running} job(s) running, {queued} queued")),
        Err(e) => r.warn("workers", format!("cannot read the queue: {e}")),
    }
    store.close().await;
    finish(r)
}

fn finish(r: Report) -> Result<bool> {
    if r.problems == 0 {
        println!("nothing to fix");
        Ok(true)
    } else {
        println!("{} problem(s) to fix", r.problems);
        Ok(false)
    }
}
