//! `brokeforge login`: sign in and keep an API token for the client commands.

use anyhow::Result;
use clap::Args;

use super::common::*;
use crate::client::{Client, ClientArgs, SavedLogin, save_login};

#[derive(Args)]
pub struct LoginArgs {
    /// The BrokeForge server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub email: String,
    /// Read the password from standard input.
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// With two-factor sign-in: the app's current code (it works once), or a recovery code.
    #[arg(long)]
    pub code: Option<String>,
    /// Name of the API token this login creates.
    #[arg(long, default_value = "cli")]
    pub name: String,
}

pub async fn login(a: LoginArgs) -> Result<()> {
    let password = password_from_stdin()?;
    let client = Client::new(&ClientArgs {
        url: Some(a.url.clone()),
        ..ClientArgs::default()
    })?;
    let token = client.login(&a.email, &password, a.code.as_deref(), &a.name)?;
    let path = save_login(&SavedLogin {
        url: client.base.clone(),
        token,
    })?;
    println!(
        "signed in to {} as {}; token saved in {}",
        client.base,
        a.email,
        path.display()
    );
    Ok(())
}
