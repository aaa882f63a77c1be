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
    },
    /// List users.
    ListUsers,
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
            AdminCommand::CreateToken { email, name } => {
                let user = store.user_by_email(&email).await?.ok_or_else(|| {
                    anyhow!("no user {email}: create it with `brokeforge admin create-user`")
                })?;
                let token = domain
                    .new_token(user.id, &name)
                    .await
                    .map_err(domain_error)?
                    .token;
                eprintln!(
                    "API token `{name}` for {} (shown once; keep it secret):",
                    user.email
                );
                println!("{token}");
            }
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
