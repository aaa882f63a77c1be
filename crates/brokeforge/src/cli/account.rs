//! `brokeforge account 2fa ...`: two-factor sign-in for the signed-in account (through the API).

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;

use super::common::*;
use crate::client::{Client, ClientArgs};

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Two-factor sign-in (TOTP): enable, disable, status.
    #[command(name = "2fa", subcommand)]
    TwoFactor(TwoFactorCommand),
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
    let AccountCommand::TwoFactor(cmd) = cmd;
    match cmd {
        TwoFactorCommand::Enable { code } => {
            let setup = client.post("/account/2fa", json!({}))?;
            let uri = setup["otpauth_uri"].as_str().unwrap_or_default();
            let secret = setup["secret"].as_str().unwrap_or_default();
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
            let done = client.post("/account/2fa/confirm", json!({"code": code}))?;
            if client.json {
                print_json(
                    &json!({"otpauth_uri": uri, "secret": secret, "recovery_codes": done["recovery_codes"]}),
                );
            } else {
                eprintln!(
                    "two-factor sign-in is on; recovery codes (each works once; keep them offline):"
                );
                for c in done["recovery_codes"].as_array().into_iter().flatten() {
                    println!("{}", c.as_str().unwrap_or_default());
                }
            }
        }
        TwoFactorCommand::Disable { code, .. } => {
            let password = password_from_stdin()?;
            client.post(
                "/account/2fa/disable",
                json!({"password": password, "code": code}),
            )?;
            println!("two-factor sign-in is off");
        }
        TwoFactorCommand::Status => {
            let me = client.get("/me")?;
            let on = me["user"]["two_factor"].as_bool().unwrap_or(false);
            if client.json {
                print_json(&json!({"two_factor": on}));
            } else {
                println!("two-factor sign-in is {}", if on { "on" } else { "off" });
            }
        }
    }
    Ok(())
}
