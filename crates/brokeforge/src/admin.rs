//! `brokeforge admin ...`: account administration on the local database (no server needed).

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use brokeforge_web::AppState;
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

fn api_error(e: brokeforge_web::error::ApiError) -> anyhow::Error {
    match e.field {
        Some(f) => anyhow!("{f}: {}", e.message),
        None => anyhow!("{}", e.message),
    }
}

pub async fn run(cmd: AdminCommand) -> Result<()> {
    let store = crate::config::open_store().await?;
    let state = AppState::new(store.clone(), crate::serve::web_config());
    let result = async {
        match cmd {
            AdminCommand::CreateUser { email, admin, .. } => {
                let password = read_password()?;
                let user = brokeforge_web::api::make_user(
                    &state,
                    &brokeforge_web::api::NewUser {
                        email,
                        password,
                        admin,
                    },
                )
                .await
                .map_err(api_error)?;
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
                let user = store
                    .user_by_email(&email)
                    .await?
                    .ok_or_else(|| anyhow!("no user {email}"))?;
                let password = read_password()?;
                brokeforge_web::auth::check_password_rules(&password).map_err(api_error)?;
                let hash = brokeforge_web::auth::hash_password(&password)
                    .await
                    .map_err(api_error)?;
                store.set_password_hash(user.id, &hash).await?;
                println!("password of {} changed; their sessions ended", user.email);
            }
            AdminCommand::CreateToken { email, name } => {
                let user = store.user_by_email(&email).await?.ok_or_else(|| {
                    anyhow!("no user {email}: create it with `brokeforge admin create-user`")
                })?;
                let (token, _) = brokeforge_web::api::new_token(&state, user.id, &name)
                    .await
                    .map_err(api_error)?;
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
