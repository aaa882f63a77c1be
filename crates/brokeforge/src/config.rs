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

pub async fn open_store() -> Result<brokeforge_store::Store> {
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
