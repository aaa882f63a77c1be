//! Where BrokeForge keeps its data, from the environment with documented defaults.

use std::path::PathBuf;

use anyhow::{Context, Result};
use brokeforge_store::MasterKey;

/// `BROKEFORGE_DATA_DIR`, else `$XDG_DATA_HOME/brokeforge`, else `~/.local/share/brokeforge`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BROKEFORGE_DATA_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("brokeforge");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/brokeforge"),
        None => PathBuf::from("./brokeforge-data"),
    }
}

/// `BROKEFORGE_DATABASE_URL`, else a SQLite file in the data directory.
pub fn database_url() -> String {
    std::env::var("BROKEFORGE_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("sqlite://{}", data_dir().join("brokeforge.db").display()))
}

/// `BROKEFORGE_MASTER_KEY` (64 hex characters), else the key file `master.key` in the data directory,
/// created with mode 0600 on first run.
pub fn master_key() -> Result<MasterKey> {
    if let Ok(hex) = std::env::var("BROKEFORGE_MASTER_KEY")
        && !hex.is_empty()
    {
        return MasterKey::from_hex(&hex).context("BROKEFORGE_MASTER_KEY is invalid");
    }
    let path = data_dir().join("master.key");
    MasterKey::load_or_create(&path)
        .with_context(|| format!("cannot load the master key from {}", path.display()))
}

/// The master key if one is configured (`BROKEFORGE_MASTER_KEY` or an existing `master.key`); never creates
/// one (for `doctor`).
pub fn master_key_if_present() -> Result<Option<MasterKey>> {
    let given = std::env::var("BROKEFORGE_MASTER_KEY")
        .ok()
        .filter(|v| !v.is_empty());
    if given.is_some() || data_dir().join("master.key").exists() {
        return master_key().map(Some);
    }
    Ok(None)
}

/// How much history is kept (`BROKEFORGE_RETENTION_DAYS`, `_LOG_LINES`, `_EVENTS`, `_AUDIT_DAYS`; see the
/// README).
pub fn retention() -> Result<brokeforge_domain::maintenance::Retention> {
    let mut r = brokeforge_domain::maintenance::Retention::default();
    for (key, field) in [
        ("BROKEFORGE_RETENTION_DAYS", &mut r.days),
        (
            "BROKEFORGE_RETENTION_LOG_LINES",
            &mut r.log_lines_per_server,
        ),
        ("BROKEFORGE_RETENTION_EVENTS", &mut r.events_per_server),
        ("BROKEFORGE_RETENTION_AUDIT_DAYS", &mut r.audit_days),
    ] {
        if let Ok(v) = std::env::var(key)
            && !v.trim().is_empty()
        {
            *field = v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .with_context(|| format!("{key}={v}: give a whole number of at least 1"))?;
        }
    }
    Ok(r)
}

/// How often each server is checked for drift (`BROKEFORGE_DRIFT_CHECK_HOURS`, default 24; 0: never).
pub fn drift_check_every() -> Result<std::time::Duration> {
    let key = "BROKEFORGE_DRIFT_CHECK_HOURS";
    let hours = match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|h| *h <= 24 * 365)
            .with_context(|| {
                format!("{key}={v}: give a whole number of hours (0 turns checks off)")
            })?,
        _ => 24,
    };
    Ok(std::time::Duration::from_secs(hours * 3600))
}

pub async fn open_store() -> Result<brokeforge_store::Store> {
    refuse_foreign_data_dir()?;
    let url = database_url();
    let key = master_key()?;
    brokeforge_store::Store::open(&url, &key)
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}",
                brokeforge_store::redact_url(&url)
            )
        })
}

/// Load a configuration file of `KEY=value` lines (`#` comments, optional quotes; a key's last line counts)
/// into the environment; a variable already set in the environment wins. The file is `path`, else `BROKEFORGE_CONFIG`, else
/// `/etc/brokeforge/brokeforge.conf` when it exists. Only `BROKEFORGE_*` keys are accepted.
pub fn load_file(path: Option<&std::path::Path>) -> Result<Option<PathBuf>> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match std::env::var_os("BROKEFORGE_CONFIG").filter(|v| !v.is_empty()) {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from("/etc/brokeforge/brokeforge.conf"), false),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        // The package's file is readable by root and the service's group only: another user on the panel
        // machine running the CLI client has no use for it.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !required => return Ok(None),
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot read the configuration file {}: {e}",
                path.display()
            ));
        }
    };
    // A key given twice takes its last value (as in a shell or systemd's EnvironmentFile): uncommenting an
    // example further down must not be silently beaten by the default above it.
    let mut settings: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{}:{}: expected KEY=value", path.display(), n + 1))?;
        let key = key.trim();
        if !key.starts_with("BROKEFORGE_")
            || !key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            anyhow::bail!(
                "{}:{}: `{key}` is not a BrokeForge setting (they start with BROKEFORGE_)",
                path.display(),
                n + 1
            );
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        settings.retain(|(k, _)| k != key);
        settings.push((key.to_string(), value.to_string()));
    }
    for (key, value) in settings {
        if std::env::var_os(&key).is_none() {
            // SAFETY: called from `main` before the async runtime (or any other thread) starts.
            unsafe { std::env::set_var(&key, &value) };
        }
    }
    Ok(Some(path))
}

/// Root opening the package's data directory (owned by the `brokeforge` user) would leave root-owned database
/// files behind that the service then cannot write: say who should run the command instead.
fn refuse_foreign_data_dir() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = data_dir();
    let (Ok(me), Ok(meta)) = (std::fs::metadata("/proc/self"), std::fs::metadata(&dir)) else {
        return Ok(());
    };
    if me.uid() != 0 || meta.uid() == 0 {
        return Ok(());
    }
    let owner = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2) == Some(&meta.uid().to_string().as_str())).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| meta.uid().to_string());
    anyhow::bail!(
        "{} belongs to the user {owner}: run this as that user (sudo -u {owner} brokeforge ...), so the files \
         it creates stay theirs",
        dir.display()
    )
}
