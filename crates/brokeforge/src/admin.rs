//! `brokeforge admin ...`: account administration on the local database (no server needed).

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use brokeforge_domain::Domain;
use brokeforge_domain::accounts::NewUser;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a user; the password is read from standard input (never from the command line).
    CreateUser {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (required: passwords do not belong in argv).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's password from standard input; their browser sessions end.
    ResetPassword {
        #[arg(long)]
        email: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Create a personal API token for a user; the token is printed alone on the last line.
    CreateToken {
        #[arg(long)]
        email: String,
        /// A name to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// read (safe requests, no secrets), deploy (also deployments, rollbacks, site commands) or full.
        #[arg(long, default_value = "full")]
        scope: String,
        /// Days until it stops working (default: until revoked).
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// List users.
    ListUsers,
    /// Re-seal every stored secret under a new master key in one transaction, then switch to it; the old key
    /// stops working. Stop serve and workers first. With BROKEFORGE_MASTER_KEY set, the new key is written
    /// to --new-key-file for you to put in the configuration; otherwise master.key is replaced.
    RotateMasterKey {
        #[arg(long)]
        new_key_file: Option<std::path::PathBuf>,
    },
    /// BrokeForge's own backup on a schedule, to an S3-compatible or SFTP backup storage.
    SelfBackup {
        #[command(subcommand)]
        command: crate::selfbackup::scheduled::SelfBackupCommand,
    },
}

fn read_password() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from standard input")?;
    let pw = s.strip_suffix('\n').unwrap_or(&s);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    Ok(pw.to_string())
}

fn domain_error(e: brokeforge_domain::DomainError) -> anyhow::Error {
    match e {
        brokeforge_domain::DomainError::Invalid(v) => anyhow!("{}: {}", v.field, v.message),
        e => anyhow!("{e}"),
    }
}

pub async fn run(cmd: AdminCommand) -> Result<()> {
    if let AdminCommand::SelfBackup { command } = cmd {
        return crate::selfbackup::scheduled::command(command).await;
    }
    let store = crate::config::open_store().await?;
    let domain = Domain::new(store.clone());
    let result = async {
        match cmd {
            AdminCommand::CreateUser { email, admin, .. } => {
                let password = read_password()?;
                let user = domain
                    .create_user(&NewUser {
                        email,
                        password,
                        admin,
                    })
                    .await
                    .map_err(domain_error)?;
                println!(
                    "created {} {}",
                    if user.is_admin {
                        "administrator"
                    } else {
                        "user"
                    },
                    user.email
                );
            }
            AdminCommand::ResetPassword { email, .. } => {
                let password = read_password()?;
                let user = domain
                    .reset_password(&email, &password)
                    .await
                    .map_err(domain_error)?;
                println!(
                    "password of {} changed; their sessions and API tokens ended",
                    user.email
                );
            }
            AdminCommand::CreateToken {
                email,
                name,
                scope,
                expires_in_days,
            } => {
                let scope: brokeforge_store::TokenScope =
                    scope.parse().map_err(|e: String| anyhow!("--scope: {e}"))?;
                let user = store.user_by_email(&email).await?.ok_or_else(|| {
                    anyhow!("no user {email}: create it with `brokeforge admin create-user`")
                })?;
                let token = domain
                    .new_scoped_token(user.id, &name, scope, expires_in_days)
                    .await
                    .map_err(domain_error)?
                    .token;
                eprintln!(
                    "API token `{name}` for {} (shown once; keep it secret):",
                    user.email
                );
                println!("{token}");
            }
            AdminCommand::RotateMasterKey { new_key_file } => {
                let new = brokeforge_store::MasterKey::generate()?;
                let from_env = std::env::var("BROKEFORGE_MASTER_KEY").is_ok_and(|v| !v.is_empty());
                // The new key is on disk before any secret is sealed with it.
                let (staged, live) = match (&new_key_file, from_env) {
                    (Some(f), _) => (f.clone(), None),
                    (None, true) => bail!(
                        "BROKEFORGE_MASTER_KEY is set: give --new-key-file PATH for the new key, then put it in the configuration"
                    ),
                    (None, false) => {
                        let live = crate::config::data_dir().join("master.key");
                        (live.with_extension("key.new"), Some(live))
                    }
                };
                if staged.exists() {
                    if live.is_some() {
                        // Left by a rotation that stopped before it committed (the database still opened
                        // with the old key above): start over.
                        std::fs::remove_file(&staged)?;
                    } else {
                        bail!("{} exists: give a new file", staged.display());
                    }
                }
                crate::selfbackup::write_key(&staged, &new.to_hex())?;
                let n = store
                    .rotate_master_key(&new)
                    .await
                    .context("rotation failed; nothing changed (the old key still opens everything)")?;
                match live {
                    Some(live) => {
                        std::fs::rename(&staged, &live)?;
                        println!("re-sealed {n} secrets under a new master key ({}); the old key no longer opens them", live.display());
                    }
                    None => println!(
                        "re-sealed {n} secrets under a new master key, written to {}: set BROKEFORGE_MASTER_KEY to it before starting BrokeForge",
                        staged.display()
                    ),
                }
            }
            AdminCommand::SelfBackup { .. } => unreachable!("handled before the store opens"),
            AdminCommand::ListUsers => {
                let users = store.users().await?;
                if users.is_empty() {
                    bail!("no users yet: open the web app or run `brokeforge admin create-user`");
                }
                for u in users {
                    println!(
                        "{:<6} {:<40} {}",
                        u.id,
                        u.email,
                        if u.is_admin { "admin" } else { "" }
                    );
                }
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}
