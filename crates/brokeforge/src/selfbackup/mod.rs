//! `brokeforge backup-self` and `restore-self`: BrokeForge's own state while it runs, and back into an empty
//! data directory. SQLite is copied with `VACUUM INTO` (consistent, writers go on). With a passphrase the
//! copy is sealed together with the master key (Argon2id, then XChaCha20-Poly1305 in 1 MiB chunks, each
//! bound to its position and to whether it is the last, so a cut or reordered file is refused); without
//! one it is the bare database and the master key must be kept apart. PostgreSQL is copied the documented
//! way, `pg_dump -Fc` (one consistent snapshot), sealed the same way, and restored with `pg_restore` into an
//! empty database; the password reaches both tools in `PGPASSWORD`, never in their arguments.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use clap::Args;
use zeroize::Zeroizing;

use crate::config;

pub mod scheduled;

const MAGIC: &[u8] = b"BROKEFORGE-SELF-BACKUP 1\n";
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
/// What `pg_dump -Fc` files start with.
const PGDUMP_MAGIC: &[u8] = b"PGDMP";
const CHUNK: usize = 1 << 20;

#[derive(Args)]
pub struct BackupSelfArgs {
    /// The file to write (it must not exist).
    #[arg(long)]
    to: PathBuf,
    /// Seal it with a passphrase read from standard input; the master key then travels inside.
    #[arg(long)]
    passphrase_stdin: bool,
}

#[derive(Args)]
pub struct RestoreSelfArgs {
    /// A file `backup-self` wrote.
    #[arg(long)]
    from: PathBuf,
    /// Its passphrase, from standard input (for a sealed file).
    #[arg(long)]
    passphrase_stdin: bool,
}

fn passphrase() -> Result<Zeroizing<String>> {
    let mut s = Zeroizing::new(String::new());
    std::io::stdin().read_to_string(&mut s)?;
    let p = Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_string());
    if p.chars().count() < 12 {
        bail!("give a passphrase of at least 12 characters on standard input");
    }
    Ok(p)
}

fn derive(passphrase: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(64 * 1024, 3, 1, Some(32))
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key[..])
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(key)
}

fn nonce(prefix: &[u8; 16], counter: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(prefix);
    n[16..].copy_from_slice(&counter.to_be_bytes());
    *XNonce::from_slice(&n)
}

/// Where BrokeForge's state lives.
enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    fn configured() -> Database {
        let url = config::database_url();
        match url.strip_prefix("sqlite://") {
            Some(rest) => Database::Sqlite(PathBuf::from(rest.split('?').next().unwrap_or(rest))),
            None => Database::Postgres(url),
        }
    }

    /// The first bytes its copies start with.
    fn magic(&self) -> &'static [u8] {
        match self {
            Database::Sqlite(_) => SQLITE_MAGIC,
            Database::Postgres(_) => PGDUMP_MAGIC,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "SQLite",
            Database::Postgres(_) => "PostgreSQL",
        }
    }
}

/// `pg_dump` or `pg_restore` for `url`: the password (percent-decoded) goes in `PGPASSWORD`, the rest of the
/// URL in `--dbname` (libpq reads its `options`, host, port and TLS settings from it).
fn pg_tool(tool: &str, url: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(tool);
    let (url, password) = split_password(url);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p.as_str());
    }
    cmd.arg("--dbname").arg(url);
    cmd
}

fn split_password(url: &str) -> (String, Option<Zeroizing<String>>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_string(), None);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let Some((user, password)) = rest[..at].split_once(':') else {
        return (url.to_string(), None);
    };
    let stripped = format!("{}{user}{}", &url[..scheme_end + 3], &rest[at..]);
    (stripped, Some(percent_decode(password)))
}

fn percent_decode(s: &str) -> Zeroizing<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    Zeroizing::new(String::from_utf8_lossy(&out).into_owned())
}

fn run_tool(mut cmd: std::process::Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| {
        anyhow::anyhow!("cannot run {what} ({e}): install the PostgreSQL client tools (apt install postgresql-client)")
    })?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub async fn backup_self(a: BackupSelfArgs) -> Result<()> {
    let db = Database::configured();
    if a.to.exists() {
        bail!("{} exists: give a new file", a.to.display());
    }
    let pass = if a.passphrase_stdin {
        Some(passphrase()?)
    } else {
        None
    };
    // Opening proves the key fits the database before anything is written.
    let store = config::open_store().await?;
    let written = write_copy(&store, &a.to, pass.as_deref().map(|p| p.as_str())).await;
    store.close().await;
    written?;
    if pass.is_none() {
        eprintln!(
            "wrote {} (the {} database only: keep the master key apart, or use --passphrase-stdin to seal it inside)",
            a.to.display(),
            db.name()
        );
    } else {
        eprintln!(
            "wrote {} ({}, sealed with the passphrase, master key inside)",
            a.to.display(),
            db.name()
        );
    }
    Ok(())
}

/// A consistent copy of the configured database at `to` (which must not exist): sealed together with the
/// master key when a passphrase is given, else the bare database.
pub(crate) async fn write_copy(
    store: &brokeforge_store::Store,
    to: &Path,
    pass: Option<&str>,
) -> Result<()> {
    let key = config::master_key()?;
    let copy = to.with_extension("copy-partial");
    let _ = std::fs::remove_file(&copy);
    let copied = match Database::configured() {
        Database::Sqlite(_) => store
            .vacuum_into(&copy.to_string_lossy())
            .await
            .context("copying the database"),
        Database::Postgres(url) => {
            let mut cmd = pg_tool("pg_dump", &url);
            cmd.args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
                .arg(&copy);
            run_tool(cmd, "pg_dump")
        }
    };
    let result = copied.and_then(|()| match pass {
        None => std::fs::rename(&copy, to).context("moving the copy into place"),
        Some(p) => seal(&copy, to, p, &key.to_hex()),
    });
    let _ = std::fs::remove_file(&copy);
    result
}

fn seal(copy: &Path, to: &Path, passphrase: &str, key_hex: &str) -> Result<()> {
    let mut salt = [0u8; 16];
    let mut prefix = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    getrandom::fill(&mut prefix).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    let cipher = XChaCha20Poly1305::new_from_slice(&derive(passphrase, &salt)?[..])
        .map_err(|e| anyhow::anyhow!("cipher: {e}"))?;
    let partial = to.with_extension("partial");
    let mut out = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?,
    );
    out.write_all(MAGIC)?;
    out.write_all(&salt)?;
    out.write_all(&prefix)?;
    // The plaintext: the master key (64 hex characters), then the database.
    let mut input =
        std::io::Cursor::new(key_hex.as_bytes().to_vec()).chain(std::fs::File::open(copy)?);
    let mut buf = vec![0u8; CHUNK];
    let mut next = vec![0u8; CHUNK];
    let mut n = read_full(&mut input, &mut buf)?;
    let mut counter = 0u64;
    loop {
        let m = read_full(&mut input, &mut next)?;
        let last = m == 0;
        let ct = cipher
            .encrypt(
                &nonce(&prefix, counter),
                Payload {
                    msg: &buf[..n],
                    aad: if last { b"last" } else { b"more" },
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        out.write_all(&(ct.len() as u32).to_be_bytes())?;
        out.write_all(&ct)?;
        if last {
            break;
        }
        std::mem::swap(&mut buf, &mut next);
        n = m;
        counter += 1;
    }
    out.into_inner()
        .map_err(|e| anyhow::anyhow!("writing: {e}"))?
        .sync_all()?;
    std::fs::rename(&partial, to)?;
    Ok(())
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let m = r.read(&mut buf[n..])?;
        if m == 0 {
            break;
        }
        n += m;
    }
    Ok(n)
}

pub async fn restore_self(a: RestoreSelfArgs) -> Result<()> {
    let db = Database::configured();
    match &db {
        Database::Sqlite(path) => {
            if path.exists() && std::fs::metadata(path)?.len() > 0 {
                bail!(
                    "{} exists: restore-self fills an empty data directory (point BROKEFORGE_DATA_DIR or BROKEFORGE_DATABASE_URL elsewhere)",
                    path.display()
                );
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
        }
        Database::Postgres(url) => {
            if !brokeforge_store::is_empty_database(url)
                .await
                .with_context(|| format!("cannot reach {}", brokeforge_store::redact_url(url)))?
            {
                bail!(
                    "{} is not empty: restore-self fills an empty database (create one and point BROKEFORGE_DATABASE_URL at it)",
                    brokeforge_store::redact_url(url)
                );
            }
        }
    }
    let mut file = std::fs::File::open(&a.from)
        .with_context(|| format!("cannot open {}", a.from.display()))?;
    let mut head = vec![0u8; MAGIC.len()];
    let got = read_full(&mut file, &mut head)?;
    let head = &head[..got];
    let key_given = std::env::var("BROKEFORGE_MASTER_KEY").is_ok_and(|v| !v.is_empty());
    let key_path = config::data_dir().join("master.key");
    // The plain copy, unsealed here when it was sealed (removed when dropped).
    let scratch = match &db {
        Database::Sqlite(path) => tempfile::Builder::new()
            .prefix(".restoring")
            .tempfile_in(path.parent().unwrap_or(Path::new(".")))?,
        Database::Postgres(_) => tempfile::Builder::new()
            .prefix("brokeforge-restore")
            .tempfile()?,
    };
    let mut key_to_write = None;
    let plain: &Path = if head.starts_with(SQLITE_MAGIC) || head.starts_with(PGDUMP_MAGIC) {
        if !key_given && !key_path.exists() {
            bail!(
                "this copy holds no master key: set BROKEFORGE_MASTER_KEY or put master.key in {} first",
                config::data_dir().display()
            );
        }
        &a.from
    } else if head == MAGIC {
        if !a.passphrase_stdin {
            bail!("this copy is sealed: give its passphrase with --passphrase-stdin");
        }
        let key_hex = unseal(&mut file, scratch.path(), &passphrase()?)?;
        if key_given {
            let given = std::env::var("BROKEFORGE_MASTER_KEY").unwrap_or_default();
            if given.trim() != key_hex.as_str() {
                bail!(
                    "BROKEFORGE_MASTER_KEY is not the key sealed in this copy: unset it to use the copy's"
                );
            }
        } else if key_path.exists() {
            bail!(
                "{} exists: restore-self fills an empty data directory",
                key_path.display()
            );
        } else {
            key_to_write = Some(key_hex);
        }
        scratch.path()
    } else {
        bail!("{} is not a file backup-self wrote", a.from.display());
    };
    let mut inner = vec![0u8; SQLITE_MAGIC.len()];
    let n = read_full(&mut std::fs::File::open(plain)?, &mut inner)?;
    if !inner[..n].starts_with(db.magic()) {
        bail!(
            "this copy is not of a {} database, which is what BrokeForge is configured for (BROKEFORGE_DATABASE_URL)",
            db.name()
        );
    }
    match &db {
        Database::Sqlite(path) => {
            let partial = path.with_extension("restoring");
            std::fs::copy(plain, &partial)?;
            std::fs::rename(&partial, path)?;
        }
        Database::Postgres(url) => {
            let mut cmd = pg_tool("pg_restore", url);
            cmd.args([
                "--single-transaction",
                "--exit-on-error",
                "--no-owner",
                "--no-privileges",
            ])
            .arg(plain);
            run_tool(cmd, "pg_restore")?;
        }
    }
    drop(scratch);
    if let Some(k) = key_to_write {
        write_key(&key_path, &k)?;
    }
    // Opening it proves the key fits and brings the schema up to this binary's.
    let store = config::open_store().await?;
    let users = store.count_users().await?;
    store.close().await;
    let place = match &db {
        Database::Sqlite(path) => path.display().to_string(),
        Database::Postgres(url) => brokeforge_store::redact_url(url),
    };
    println!("restored {place} ({users} user(s)); start BrokeForge with this data directory");
    Ok(())
}

pub(crate) fn write_key(path: &Path, key_hex: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(key_hex.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

/// Decrypt the chunks after the magic into `to`; the master key (hex) comes back.
fn unseal(file: &mut std::fs::File, to: &Path, passphrase: &str) -> Result<Zeroizing<String>> {
    let mut salt = [0u8; 16];
    let mut prefix = [0u8; 16];
    file.read_exact(&mut salt)
        .context("the file is cut short")?;
    file.read_exact(&mut prefix)
        .context("the file is cut short")?;
    let cipher = XChaCha20Poly1305::new_from_slice(&derive(passphrase, &salt)?[..])
        .map_err(|e| anyhow::anyhow!("cipher: {e}"))?;
    let mut reader = std::io::BufReader::new(file);
    let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
    let mut key_hex = Zeroizing::new(String::new());
    let mut counter = 0u64;
    let result = (|| -> Result<()> {
        loop {
            let mut len = [0u8; 4];
            reader
                .read_exact(&mut len)
                .context("the file is cut short (no last part)")?;
            let len = u32::from_be_bytes(len) as usize;
            if len > CHUNK + 16 {
                bail!("the file is damaged");
            }
            let mut ct = vec![0u8; len];
            reader
                .read_exact(&mut ct)
                .context("the file is cut short")?;
            let mut last = true;
            let plain = cipher
                .decrypt(
                    &nonce(&prefix, counter),
                    Payload {
                        msg: &ct,
                        aad: b"last",
                    },
                )
                .or_else(|_| {
                    last = false;
                    cipher.decrypt(
                        &nonce(&prefix, counter),
                        Payload {
                            msg: &ct,
                            aad: b"more",
                        },
                    )
                })
                .map_err(|_| {
                    anyhow::anyhow!("wrong passphrase, or the file was changed or damaged")
                })?;
            let mut body = &plain[..];
            if key_hex.len() < 64 {
                let take = (64 - key_hex.len()).min(body.len());
                key_hex
                    .push_str(std::str::from_utf8(&body[..take]).context("the file is damaged")?);
                body = &body[take..];
            }
            out.write_all(body)?;
            if last {
                let mut rest = [0u8; 1];
                if reader.read(&mut rest)? != 0 {
                    bail!("the file has data after its last part");
                }
                break;
            }
            counter += 1;
        }
        out.flush()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(to);
        return Err(e);
    }
    Ok(key_hex)
}
