//! BrokeForge's own backup on a schedule, to one of the backup storages (S3-compatible or SFTP): the copy
//! `backup-self` makes, sealed with a passphrase (the master key inside), put into a restic repository
//! `ROOT/brokeforge-self` by the same helper script the servers run, with the passphrase as the repository's
//! password. One passphrase, kept offline by the administrator, restores everything:
//! `restic -r REPO restore latest --target DIR`, then `brokeforge restore-self --from DIR/.../brokeforge.bfbackup`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use brokeforge_core::time::{now_ms, utc_stamp};
use brokeforge_core::{Secret, shell_quote};
use brokeforge_packages::services::backup::repository::HELPER_TEXT;
use brokeforge_packages::services::backup::storage::StorageConfig;
use brokeforge_store::Store;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::config;

/// How long one run may take (a large database over a slow link).
const RUN_LIMIT: Duration = Duration::from_secs(3 * 3600);
const CHECK_EVERY: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum SelfBackupCommand {
    /// Back BrokeForge up on a schedule to a backup storage of OWNER's (S3-compatible or SFTP); the passphrase
    /// (at least 12 characters, from standard input) seals every copy and the repository: keep it offline.
    Enable {
        /// The account whose storage it is.
        #[arg(long)]
        owner: String,
        /// The storage's name (`brokeforge backup storage list`).
        #[arg(long)]
        storage: String,
        /// Cron, in UTC.
        #[arg(long, default_value = "30 2 * * *")]
        schedule: String,
        /// How many copies to keep.
        #[arg(long, default_value_t = 14)]
        keep_last: i64,
        #[arg(long, required = true)]
        passphrase_stdin: bool,
    },
    /// Where it goes, when it runs next, how the last run went.
    Status,
    /// Run it now, in this process (the schedule is unchanged).
    Run,
    /// Stop it; the copies already made stay in the storage.
    Disable,
}

pub async fn command(cmd: SelfBackupCommand) -> Result<()> {
    let store = config::open_store().await?;
    let result = match cmd {
        SelfBackupCommand::Enable {
            owner,
            storage,
            schedule,
            keep_last,
            passphrase_stdin: _,
        } => {
            let pass = super::passphrase()?;
            enable(&store, &owner, &storage, &schedule, keep_last, &pass).await
        }
        SelfBackupCommand::Status => status(&store).await,
        SelfBackupCommand::Run => {
            if store.self_backup().await?.is_none() {
                bail!(
                    "BrokeForge's own backup is not set up: brokeforge admin self-backup enable ..."
                );
            }
            let result = run_once(&store).await;
            let (ok, message) = match &result {
                Ok(m) => (true, m.clone()),
                Err(e) => (false, format!("{e:#}")),
            };
            store.record_self_backup(ok, &message).await?;
            audit(&store, "administrator (command line)", ok, &message).await;
            result.map(|m| println!("{m}"))
        }
        SelfBackupCommand::Disable => {
            store.delete_self_backup().await?;
            println!("BrokeForge's own backup is off; the copies already made stay in the storage");
            Ok(())
        }
    };
    store.close().await;
    result
}

async fn enable(
    store: &Store,
    owner: &str,
    storage_name: &str,
    schedule: &str,
    keep_last: i64,
    passphrase: &str,
) -> Result<()> {
    let user = store
        .user_by_email(owner)
        .await?
        .ok_or_else(|| anyhow!("no user {owner}"))?;
    let storage = store
        .backup_storage_by_name(user.id, storage_name.trim())
        .await?
        .ok_or_else(|| anyhow!("{owner} has no backup storage `{storage_name}`"))?;
    match StorageConfig::of(&storage)? {
        StorageConfig::Local { .. } => bail!(
            "{} is a directory on one of the servers: BrokeForge's own backup goes to S3-compatible or SFTP storage",
            storage.name
        ),
        StorageConfig::Sftp {
            known_hosts: None, ..
        } => bail!(
            "the SFTP server's host key of {} is not pinned yet: check the storage first (brokeforge backup storage check)",
            storage.name
        ),
        _ => {}
    }
    if passphrase.chars().count() < 12 || passphrase.contains(['\n', '\r']) {
        bail!("give a passphrase of at least 12 characters on one line");
    }
    if !(1..=1000).contains(&keep_last) {
        bail!("--keep-last: keep 1 to 1000 copies");
    }
    let next = brokeforge_domain::backups::next_run(schedule.trim(), now_ms())
        .map_err(|e| anyhow!("--schedule: {}", e.message))?;
    store
        .set_self_backup(
            storage.id,
            schedule.trim(),
            keep_last,
            next,
            &Secret::new(passphrase),
        )
        .await?;
    println!(
        "BrokeForge backs itself up to {} ({}) at `{}` (UTC), next {}, keeping {keep_last}; keep the passphrase \
         offline: it alone opens the copies",
        storage.name,
        repository(&StorageConfig::of(&storage)?),
        schedule.trim(),
        utc_stamp(next)
    );
    Ok(())
}

async fn status(store: &Store) -> Result<()> {
    let Some(sb) = store.self_backup().await? else {
        println!("BrokeForge's own backup is not set up (brokeforge admin self-backup enable ...)");
        return Ok(());
    };
    let storage = store.backup_storage(sb.storage_id).await?;
    println!("storage      {}", storage.name);
    println!("repository   {}", repository(&StorageConfig::of(&storage)?));
    println!("schedule     {} (UTC), keep {}", sb.schedule, sb.keep_last);
    println!("next run     {}", utc_stamp(sb.next_run_at));
    match (sb.last_run_at, sb.last_ok) {
        (Some(at), Some(ok)) => println!(
            "last run     {} {}: {}",
            utc_stamp(at),
            if ok { "ok" } else { "FAILED" },
            sb.last_message.unwrap_or_default()
        ),
        _ => println!("last run     never"),
    }
    Ok(())
}

/// The restic repository of BrokeForge's own copies in a storage.
fn repository(config: &StorageConfig) -> String {
    format!("{}/brokeforge-self", config.root())
}

/// One run: a sealed copy into a fixed directory of the data directory (a fixed path, so restic's
/// retention sees one series), then `backup-files` and `forget --keep-last N --prune` through the helper.
pub async fn run_once(store: &Store) -> Result<String> {
    let sb = store
        .self_backup()
        .await?
        .ok_or_else(|| anyhow!("BrokeForge's own backup is not set up"))?;
    let storage = store.backup_storage(sb.storage_id).await?;
    let storage_config = StorageConfig::of(&storage)?;
    let secret = store.backup_storage_secret(storage.id).await?;
    let pass = store.self_backup_passphrase().await?;
    let dir = config::data_dir().join("self-backup");
    let copy_dir = dir.join("copy");
    private_dir(&dir)?;
    private_dir(&copy_dir)?;
    let file = copy_dir.join("brokeforge.bfbackup");
    let _ = std::fs::remove_file(&file);
    super::write_copy(store, &file, Some(pass.expose())).await?;
    let script = dir.join("backup.sh");
    std::fs::write(&script, HELPER_TEXT).context("writing the backup helper")?;
    let url = repository(&storage_config);
    let stdin = storage_config.stdin(pass.expose(), secret.as_ref());
    let vars = storage_config.variables(&url);
    let result = async {
        let summary = helper(
            &script,
            &vars,
            &["backup-files", &path_str(&copy_dir)?],
            &stdin,
        )
        .await?;
        helper(
            &script,
            &vars,
            &["forget", "--keep-last", &sb.keep_last.to_string()],
            &stdin,
        )
        .await?;
        Ok::<_, anyhow::Error>(summary)
    }
    .await;
    // The sealed copy is in the repository (or the run failed): it does not stay on disk.
    let _ = std::fs::remove_file(&file);
    let summary = result?;
    let field = |name: &str| {
        serde_json::from_str::<serde_json::Value>(summary.lines().last().unwrap_or(""))
            .ok()
            .and_then(|v| v.get(name).cloned())
    };
    let id = field("snapshot_id")
        .and_then(|v| v.as_str().map(|s| s.chars().take(8).collect::<String>()))
        .unwrap_or_else(|| "?".into());
    let bytes = field("total_bytes_processed")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    Ok(format!(
        "snapshot {id} ({} KiB) in {url}",
        bytes.div_ceil(1024)
    ))
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} is not UTF-8", p.display()))
}

fn private_dir(dir: &PathBuf) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Run the helper locally: settings as quoted variables, secrets on its standard input only.
async fn helper(script: &Path, vars: &str, args: &[&str], stdin: &Secret) -> Result<String> {
    use tokio::io::AsyncWriteExt;
    let words: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let line = format!(
        "{vars} exec bash {} {}",
        shell_quote(&path_str(script)?),
        words.join(" ")
    );
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(line)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run bash")?;
    let mut input = child.stdin.take().expect("piped");
    input.write_all(stdin.expose().as_bytes()).await?;
    drop(input);
    let out = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{} did not finish in {RUN_LIMIT:?}", args[0]))??;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        bail!(
            "{} failed: {}",
            args[0],
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Every node with a panel runs this; of several, the one that moves `next_run_at` runs the occurrence.
pub async fn run_schedule(store: Store, stop: CancellationToken) {
    loop {
        if let Err(e) = run_if_due(&store).await {
            tracing::warn!(error = %format!("{e:#}"), "self-backup schedule");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

async fn run_if_due(store: &Store) -> Result<()> {
    let Some(sb) = store.self_backup().await? else {
        return Ok(());
    };
    let now = now_ms();
    if sb.next_run_at > now {
        return Ok(());
    }
    let next = brokeforge_domain::backups::next_run(&sb.schedule, now)
        .map_err(|e| anyhow!("schedule {}: {}", sb.schedule, e.message))?;
    if !store.claim_self_backup(sb.next_run_at, next).await? {
        return Ok(());
    }
    match run_once(store).await {
        Ok(m) => {
            tracing::info!(result = %m, "BrokeForge backed itself up");
            store.record_self_backup(true, &m).await?;
            audit(store, "schedule", true, &m).await;
        }
        Err(e) => {
            let m = format!("{e:#}");
            tracing::warn!(error = %m, "BrokeForge's own backup failed");
            store.record_self_backup(false, &m).await?;
            audit(store, "schedule", false, &m).await;
        }
    }
    Ok(())
}

/// One audit entry per run, by the schedule or by an administrator on the command line.
async fn audit(store: &Store, actor: &str, ok: bool, message: &str) {
    brokeforge_domain::Domain::new(store.clone())
        .audit(brokeforge_store::NewAuditEntry {
            actor: actor.into(),
            action: "self-backup".into(),
            target: "brokeforge-self".into(),
            status: if ok { 200 } else { 500 },
            summary: message.chars().take(500).collect(),
            ..Default::default()
        })
        .await
}
