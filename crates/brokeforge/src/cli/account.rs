//! `brokeforge account 2fa ...`: two-factor sign-in for the signed-in account (through the API).

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::json;

use super::common::*;
use brokeforge_web::api::types::{TwoFactorBody, TwoFactorSetup, TwoFactorState, UserResponse};

use crate::client::{Client, ClientArgs};
use brokeforge_web::api::types::{KeyPlacement, NewSshKey};

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Two-factor sign-in (TOTP): enable, disable, status.
    #[command(name = "2fa", subcommand)]
    TwoFactor(TwoFactorCommand),
    /// Your personal SSH keys: add, list, remove, and put them on servers.
    #[command(name = "ssh-key", subcommand)]
    SshKey(SshKeyCommand),
}

#[derive(Subcommand)]
pub enum SshKeyCommand {
    /// Add a public key (from a file such as ~/.ssh/id_ed25519.pub).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Your keys and the servers they are on.
    List,
    /// Delete a key (by name, id or fingerprint): it leaves every server it is on.
    Remove {
        #[arg(long)]
        key: String,
        #[arg(long)]
        follow: bool,
    },
    /// Put a key on a server, for the brokeforge user (or root, if your role allows).
    Deploy {
        #[arg(long)]
        key: String,
        #[arg(long)]
        server: String,
        #[arg(long, default_value = "brokeforge", value_parser = ["brokeforge", "root"])]
        user: String,
        #[arg(long)]
        follow: bool,
    },
    /// Take a key off a server.
    Undeploy {
        #[arg(long)]
        key: String,
        #[arg(long)]
        server: String,
        #[arg(long)]
        follow: bool,
    },
}

async fn ssh_key(client: &Client, cmd: SshKeyCommand) -> Result<()> {
    let follow_all = |jobs: serde_json::Value, follow: bool| async move {
        let jobs: Vec<brokeforge_store::Job> = serde_json::from_value(jobs)
            .context("the answer's jobs are not what the API documents")?;
        for j in jobs {
            let server = j.server_id.unwrap_or_default();
            super::common::job_result(client, server, &j, follow).await?;
        }
        anyhow::Ok(())
    };
    match cmd {
        SshKeyCommand::Add { name, file } => {
            let key = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let v = client.post(
                "/account/ssh-keys",
                NewSshKey {
                    name: name.clone(),
                    public_key: key,
                },
            )?;
            if client.json {
                super::common::print_json(&v);
            } else {
                println!(
                    "added {name} ({})",
                    v["key"]["fingerprint"].as_str().unwrap_or_default()
                );
            }
        }
        SshKeyCommand::List => {
            let v = client.get("/account/ssh-keys")?;
            if client.json {
                super::common::print_json(&v);
                return Ok(());
            }
            for k in v["keys"].as_array().into_iter().flatten() {
                let on: Vec<String> = k["servers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        format!(
                            "server {} as {} ({})",
                            d["server_id"],
                            d["unix_user"].as_str().unwrap_or_default(),
                            d["status"].as_str().unwrap_or_default()
                        )
                    })
                    .collect();
                println!(
                    "{:<4} {:<20} {}  {}",
                    k["id"],
                    k["name"].as_str().unwrap_or_default(),
                    k["fingerprint"].as_str().unwrap_or_default(),
                    if on.is_empty() {
                        "on no server".to_string()
                    } else {
                        on.join(", ")
                    }
                );
            }
        }
        SshKeyCommand::Remove { key, follow } => {
            let v = client.delete(&format!(
                "/account/ssh-keys/{}",
                super::common::urlencode(&key)
            ))?;
            follow_all(v["jobs"].clone(), follow).await?;
            if !client.json {
                println!("deleted {key}");
            }
        }
        SshKeyCommand::Deploy {
            key,
            server,
            user,
            follow,
        } => {
            let id = client.server_id(&server)?;
            let v = client.post(
                &format!("/servers/{id}/ssh-keys"),
                KeyPlacement { key, user },
            )?;
            super::common::job_result(client, id, &job_of(&v)?, follow).await?;
        }
        SshKeyCommand::Undeploy {
            key,
            server,
            follow,
        } => {
            let id = client.server_id(&server)?;
            let v = client.delete(&format!(
                "/servers/{id}/ssh-keys/{}",
                super::common::urlencode(&key)
            ))?;
            follow_all(v["jobs"].clone(), follow).await?;
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum TwoFactorCommand {
    /// Print the otpauth:// URI (and the secret) for your authenticator app, then turn it on with the app's
    /// first code (--code, or typed when asked) and print the 10 recovery codes (shown once).
    Enable {
        #[arg(long)]
        code: Option<String>,
    },
    /// Turn it off: the password from standard input and a current (or recovery) code.
    Disable {
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long)]
        code: String,
    },
    /// Whether it is on.
    Status,
}

pub async fn account(c: ClientArgs, cmd: AccountCommand) -> Result<()> {
    let client = Client::new(&c)?;
    let cmd = match cmd {
        AccountCommand::TwoFactor(cmd) => cmd,
        AccountCommand::SshKey(cmd) => return ssh_key(&client, cmd).await,
    };
    match cmd {
        TwoFactorCommand::Enable { code } => {
            let setup: TwoFactorSetup = client.post_as("/account/2fa", &serde_json::Map::new())?;
            let (uri, secret) = (&setup.otpauth_uri, &setup.secret);
            if client.json && code.is_some() {
                // Scripts get everything at the end.
            } else {
                println!("{uri}");
                eprintln!("add it to your authenticator app (or type the secret {secret})");
            }
            let code = match code {
                Some(c) => c,
                None => {
                    eprint!("the code the app shows: ");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim().to_string()
                }
            };
            if code.is_empty() {
                bail!("no code given: two-factor sign-in stays off (run this again to start over)");
            }
            let body = TwoFactorBody {
                code,
                password: String::new(),
            };
            let done: TwoFactorState = client.post_as("/account/2fa/confirm", &body)?;
            if client.json {
                print_json(
                    &json!({"otpauth_uri": uri, "secret": secret, "recovery_codes": done.recovery_codes}),
                );
            } else {
                eprintln!(
                    "two-factor sign-in is on; recovery codes (each works once; keep them offline):"
                );
                for c in &done.recovery_codes {
                    println!("{c}");
                }
            }
        }
        TwoFactorCommand::Disable { code, .. } => {
            let password = password_from_stdin()?;
            let _: TwoFactorState =
                client.post_as("/account/2fa/disable", &TwoFactorBody { password, code })?;
            println!("two-factor sign-in is off");
        }
        TwoFactorCommand::Status => {
            let me: UserResponse = client.get_as("/me")?;
            let on = me.user.two_factor;
            if client.json {
                print_json(&json!({"two_factor": on}));
            } else {
                println!("two-factor sign-in is {}", if on { "on" } else { "off" });
            }
        }
    }
    Ok(())
}
