//! The `Store`: everything BrokeForge persists, on SQLite (default) or PostgreSQL.
//!
//! One interface over two backends. Both run the same portable SQL (`$1` placeholders, BIGINT ids and Unix-ms
//! timestamps, JSON as text) through sqlx's `Any` driver; each backend has its own migrations, and the few
//! statements whose dialects differ branch on [`Backend`].

pub mod accounts;
pub mod audit;
pub mod backups;
pub mod crypto;
mod drift;
mod events;
mod idempotency;
mod job_claims;
mod job_recovery;
mod job_targets;
pub mod jobs;
pub mod metrics;
mod migrate;
pub mod models;
pub mod monitoring;
pub mod recipes;
pub mod retention;
mod rotation;
pub mod selfbackup;
mod servers;
mod services;
mod sites;
pub mod teams;
mod twofactor;
pub mod user_keys;

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::Row;
use sqlx::any::{AnyPoolOptions, AnyRow};
use zeroize::Zeroizing;

pub use accounts::{ApiToken, Session, SessionInfo, TokenScope};
pub use audit::{AuditEntry, AuditFilter, NewAuditEntry};
pub use backups::{
    BackupPlan, BackupSnapshot, BackupStorage, NewBackupPlan, NewBackupStorage, SeenSnapshot,
};
pub use crypto::{Cipher, MasterKey};
pub use idempotency::{IDEMPOTENCY_STALE_MS, IDEMPOTENCY_TTL_MS, Idempotent};
pub use jobs::{Heartbeat, Job, JobStatus, JobTarget, NewJob, Outcome, Recovered};
pub use metrics::{MonitoringAgent, Sample};
pub use models::*;
pub use monitoring::{
    AlertRule, Channel, Delivery, NewAlertRule, NewSiteCheck, RuleTransition, SiteCheck,
    check_path, check_target,
};
pub use recipes::{NewRecipeRun, Recipe, RecipeRun, RunServer};
pub use selfbackup::SelfBackup;
pub use servers::{ServerFilter, SiteSummary, TokenUse};
pub use teams::{Invitation, Member, Team};
pub use user_keys::{KeyDeployment, UserSshKey};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "unsupported database URL `{0}`: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB"
    )]
    UnsupportedUrl(String),
    #[error(
        "the master key does not match this database: secrets stored here were encrypted with another key. \
         Set BROKEFORGE_MASTER_KEY (or restore the master.key file) to the key this database was created with"
    )]
    WrongMasterKey,
    #[error("the master key must be 64 hexadecimal characters (32 bytes)")]
    BadMasterKeyFormat,
    #[error("cannot use the master key file {path}: {source}")]
    MasterKeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot decrypt {context}: the data was altered or the master key is wrong")]
    Decrypt { context: String },
    #[error("encryption error: {0}")]
    Crypto(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is invalid: {0}")]
    InvalidData(String),
    /// A write from an attempt of a job that no longer owns it (its lease was lost and the job was
    /// recovered, requeued or finished by another node).
    #[error("attempt {attempt} of job {job_id} no longer owns the job")]
    Superseded { job_id: i64, attempt: i64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Progress writes (events, command output). On PostgreSQL a pool with `synchronous_commit=off`: a crash
    /// of the database may lose the last moments of progress, never job state, and the job path stays fast.
    telemetry: AnyPool,
    /// Job claims. On PostgreSQL a connection of their own (committing like `telemetry`): when a hundred
    /// running jobs keep the progress pool busy, starting the next job does not queue behind them.
    claims: AnyPool,
    backend: Backend,
    cipher: Cipher,
    url: std::sync::Arc<str>,
    jobs_notify: std::sync::Arc<tokio::sync::Notify>,
    /// The job listener (PostgreSQL) is subscribed: NOTIFYs from other nodes reach this one.
    jobs_listening: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Woken (in this process) whenever a job finishes, for whoever waits on results.
    finished_notify: std::sync::Arc<tokio::sync::Notify>,
    /// Server ids with new activity (events, output), for live watchers in this process; on PostgreSQL also
    /// fed by other nodes through LISTEN/NOTIFY ([`Store::spawn_activity_listener`]).
    activity: tokio::sync::broadcast::Sender<i64>,
}

static DRIVERS: Once = Once::new();

/// The name of the key check stored in `store_meta`.
pub(crate) const KEY_CHECK: &str = "master_key_check";
const KEY_CHECK_PLAIN: &[u8] = b"brokeforge master key check v1";

impl Store {
    /// Connect, apply migrations and verify the master key against this database.
    pub async fn open(url: &str, key: &MasterKey) -> Result<Store> {
        let store = Self::connect(url, key).await?;
        store.migrate().await?;
        store.verify_master_key().await?;
        Ok(store)
    }

    /// Connect without migrating.
    pub async fn connect(url: &str, key: &MasterKey) -> Result<Store> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::InvalidData(format!(
                        "cannot create database directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            (Backend::Sqlite, format!("sqlite://{path}?mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        // A connection back in the pool moments ago is alive: sqlx's default ping on every acquire is a
        // round trip per statement (half of a recipe job's on PostgreSQL, #17). One idle for a while is
        // pinged, so one a database restart broke is replaced rather than handed out.
        let mut opts = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= Duration::from_secs(1) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        opts = match backend {
            // One file: a handful of connections is plenty, writers queue on the busy timeout.
            Backend::Sqlite => opts.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode=WAL",
                        "PRAGMA synchronous=NORMAL",
                        "PRAGMA foreign_keys=ON",
                        "PRAGMA busy_timeout=10000",
                    ] {
                        sqlx::Executor::execute(&mut *conn, pragma).await?;
                    }
                    Ok(())
                })
            }),
            // Few and kept open. Each backend is a process that maps the shared buffers page by page, and a
            // burst (a recipe's wave on 200 servers) that opened 16 + 8 of them made page faults a third of
            // PostgreSQL's CPU: the recipe benchmark at 200 servers ran at 1.27-1.44 of bare SSH, with 8 + 4
            // kept open at 1.24-1.28 (#17). Statements are short; a job holds no connection between them.
            Backend::Postgres => opts.max_connections(8).min_connections(8),
        };
        let pool = opts.clone().connect(&url).await?;
        let (telemetry, claims) = match backend {
            Backend::Sqlite => (pool.clone(), pool.clone()),
            Backend::Postgres => {
                let sep = if url.contains('?') { '&' } else { '?' };
                let async_commit = format!("{url}{sep}options=-c%20synchronous_commit%3Doff");
                (
                    opts.clone()
                        .max_connections(4)
                        .min_connections(4)
                        .connect(&async_commit)
                        .await?,
                    opts.max_connections(1).connect(&async_commit).await?,
                )
            }
        };
        Ok(Store {
            pool,
            telemetry,
            claims,
            backend,
            cipher: Cipher::new(key),
            url: url.into(),
            jobs_notify: Default::default(),
            jobs_listening: Default::default(),
            finished_notify: Default::default(),
            activity: tokio::sync::broadcast::channel(4096).0,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A consistent copy of a SQLite database at `path` (which must not exist), taken while it is in use
    /// (`VACUUM INTO`: one read transaction, writers go on).
    pub async fn vacuum_into(&self, path: &str) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::InvalidData(
                "VACUUM INTO is for SQLite; back PostgreSQL up with pg_dump".into(),
            ));
        }
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The URL this store was opened with (contains the password for PostgreSQL: never print it).
    /// A short, stable name for this panel's database (the same on every node): it keeps the marks a job
    /// leaves on a server apart from another panel's (or another test's) that share the server.
    pub fn panel_id(&self) -> String {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(self.url.as_bytes())[..4])
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// Apply every migration of this backend that has not run yet.
    /// The database server's clock, in Unix milliseconds (PostgreSQL; for `doctor`'s skew check).
    pub async fn database_time_ms(&self) -> Result<i64> {
        let row =
            sqlx::query("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS t")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("t")?)
    }

    /// (newest migration applied, newest this binary knows).
    pub async fn migration_state(&self) -> Result<(Option<i64>, i64)> {
        Ok((migrate::applied(&self.pool).await?, migrate::latest()))
    }

    pub async fn migrate(&self) -> Result<()> {
        migrate::run(&self.pool, self.backend).await
    }

    /// The database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A panel-wide secret kept under `key` (sealed with the master key, bound to the key's name): what every
    /// node must share, such as BrokeForge's own ACME account and certificate.
    pub async fn panel_secret(&self, key: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let row = sqlx::query("SELECT value FROM store_meta WHERE key = $1")
            .bind(format!("secret:{key}"))
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => {
                let sealed: Vec<u8> = row.try_get("value")?;
                Ok(Some(
                    self.cipher.open(&format!("store_meta:{key}"), &sealed)?,
                ))
            }
            None => Ok(None),
        }
    }

    pub async fn set_panel_secret(&self, key: &str, value: &[u8]) -> Result<()> {
        let sealed = self.cipher.seal(&format!("store_meta:{key}"), value)?;
        sqlx::query(
            "INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(format!("secret:{key}"))
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Prove the master key is the one this database's secrets were sealed with; store the proof on first use.
    pub async fn verify_master_key(&self) -> Result<()> {
        let row = sqlx::query("SELECT value FROM store_meta WHERE key = $1")
            .bind(KEY_CHECK)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => {
                let sealed: Vec<u8> = row.try_get("value")?;
                match self.cipher.open(KEY_CHECK, &sealed) {
                    Ok(plain) if plain.as_slice() == KEY_CHECK_PLAIN => Ok(()),
                    _ => Err(StoreError::WrongMasterKey),
                }
            }
            None => {
                let sealed = self.cipher.seal(KEY_CHECK, KEY_CHECK_PLAIN)?;
                sqlx::query("INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(KEY_CHECK)
                    .bind(sealed)
                    .execute(&self.pool)
                    .await?;
                // Another process may have raced us: check again against what is stored.
                Box::pin(self.verify_master_key()).await
            }
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.telemetry.close().await;
        self.claims.close().await;
    }
}

pub use sqlx::AnyPool;

/// Ids for an `IN (...)` list: numbers, so nothing to quote.
pub(crate) fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// A bare connection pool to `url` (for tools that create or drop schemas before opening a [`Store`]).
pub async fn connect_raw(url: &str) -> Result<AnyPool> {
    DRIVERS.call_once(sqlx::any::install_default_drivers);
    Ok(AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?)
}

/// Run a statement that returns nothing (DDL).
pub async fn raw_execute(pool: &AnyPool, sql: &str) -> Result<()> {
    sqlx::raw_sql(sql).execute(pool).await?;
    Ok(())
}

/// One number from a query of our own (benchmarks, checks): the first column of the first row.
pub async fn raw_scalar_i64(pool: &AnyPool, sql: &str) -> Result<i64> {
    let row = sqlx::query(sql).fetch_one(pool).await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// Whether the database at `url` holds no tables (in its current schema on PostgreSQL): what a restore may
/// fill.
pub async fn is_empty_database(url: &str) -> Result<bool> {
    let pool = connect_raw(url).await?;
    let sql = if url.starts_with("sqlite:") {
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
    } else {
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
    };
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await?;
    pool.close().await;
    Ok(n == 0)
}

/// Hide the password of a database URL before showing it.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:****{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn parse<T: FromStr>(row: &AnyRow, col: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let text: String = row.try_get(col)?;
    text.parse::<T>()
        .map_err(|e| StoreError::InvalidData(format!("{col}: {e}")))
}

fn json(row: &AnyRow, col: &str) -> Result<serde_json::Value> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::InvalidData(format!("{col}: {e}")))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://bf:secret@db/x"),
            "postgres://bf:****@db/x"
        );
        assert_eq!(
            super::redact_url("sqlite:///tmp/x.db"),
            "sqlite:///tmp/x.db"
        );
    }
}

/// Fresh, isolated stores for tests: always a SQLite file, and PostgreSQL (a new schema) when
/// `BROKEFORGE_TEST_POSTGRES_URL` is set. A set but unusable URL is an error, never a silent skip.
pub mod testing {
    use super::*;

    pub struct TestStore {
        pub name: &'static str,
        pub store: Store,
        pub url: String,
        /// The master key the store was opened with (a second "node" opens the same database with it).
        pub key: MasterKey,
        _dir: Option<tempfile::TempDir>,
    }

    /// A test backend is not configured. Under `BROKEFORGE_REQUIRE_BACKENDS=1` (`.ci/run` sets it, having
    /// started every backend) that is a failure, not a quiet skip.
    pub fn backend_missing(variable: &str) {
        if std::env::var("BROKEFORGE_REQUIRE_BACKENDS").as_deref() == Ok("1") {
            panic!(
                "{variable} is not set but BROKEFORGE_REQUIRE_BACKENDS=1: a backend CI started is not reaching the tests"
            );
        }
    }

    pub async fn stores() -> Vec<TestStore> {
        let key = MasterKey::generate().expect("randomness");
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let mut out = vec![TestStore {
            name: "sqlite",
            store: Store::open(&url, &key).await.expect("open sqlite"),
            url,
            key: key.clone(),
            _dir: Some(dir),
        }];
        if let Some(url) = postgres_schema_url().await {
            out.push(TestStore {
                name: "postgres",
                store: Store::open(&url, &key)
                    .await
                    .expect("open postgres test schema"),
                url,
                key: key.clone(),
                _dir: None,
            });
        }
        out
    }

    /// A URL pointing at a fresh schema of the test PostgreSQL, or `None` when no PostgreSQL is configured.
    pub async fn postgres_schema_url() -> Option<String> {
        let Some(base) = std::env::var("BROKEFORGE_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            backend_missing("BROKEFORGE_TEST_POSTGRES_URL");
            return None;
        };
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).expect("randomness");
        // The creation time is in the name so that later runs can drop what crashed runs left behind.
        let now = brokeforge_core::time::now_ms() / 1000;
        let schema = format!("bf_test_{now}_{}", hex::encode(suffix));
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "BROKEFORGE_TEST_POSTGRES_URL is set but PostgreSQL is unusable ({}): {e}",
                    redact_url(&base)
                )
            });
        sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
            .execute(&pool)
            .await
            .expect("create test schema");
        drop_stale_schemas(&pool, now).await;
        pool.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
    }

    /// Test schemas live as long as the test process; nothing drops them at exit, so each new one drops those
    /// older than six hours (no test run takes that long; concurrent runs keep theirs).
    async fn drop_stale_schemas(pool: &sqlx::AnyPool, now: i64) {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'bf\\_test\\_%'",
        )
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        for name in names {
            let created = name
                .strip_prefix("bf_test_")
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse::<i64>().ok());
            // Names from before the timestamp was added have none: they are stale too.
            if created.is_none_or(|t| now - t > 6 * 3600) {
                // Another run may drop the same schema at the same time; losing that race is fine.
                let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(pool)
                    .await;
            }
        }
    }
}

/// `s` for a LIKE pattern with `\` as the escape: its `%` and `_` match only themselves.
pub(crate) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
