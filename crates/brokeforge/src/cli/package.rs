//! `brokeforge install`, `remove` and `plan`: catalogue packages on a server.

use anyhow::Result;
use clap::Args;

use super::common::*;
use crate::client::{Client, ClientArgs};
use brokeforge_web::api::types::InstallBody;

#[derive(Args)]
pub struct PackageArgs {
    /// A package from `brokeforge catalogue` (webserver, mariadb, mysql, postgresql, redis).
    pub package: String,
    /// The server's name or id.
    #[arg(long)]
    pub server: String,
    /// A package parameter, repeatable: --set php_version=8.3
    #[arg(long = "set", value_parser = parse_set, value_name = "KEY=VALUE")]
    pub set: Vec<(String, String)>,
    /// Wait for the job, with progress; exit 0 only if it succeeds.
    #[arg(long)]
    pub follow: bool,
}

pub async fn install(c: ClientArgs, a: PackageArgs) -> Result<()> {
    let client = Client::new(&c)?;
    let id = client.server_id(&a.server)?;
    let v = client.post(
        &format!("/servers/{id}/services"),
        InstallBody {
            package: a.package.clone(),
            settings: settings(&a.set),
        },
    )?;
    job_result(&client, id, &job_of(&v)?, a.follow).await?;
    Ok(())
}

pub async fn remove(c: ClientArgs, a: PackageArgs) -> Result<()> {
    let client = Client::new(&c)?;
    let id = client.server_id(&a.server)?;
    let query: Vec<String> = a
        .set
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect();
    let path = format!(
        "/servers/{id}/services/{}?{}",
        urlencode(&a.package),
        query.join("&")
    );
    let v = client.delete(&path)?;
    job_result(&client, id, &job_of(&v)?, a.follow).await?;
    Ok(())
}

/// Print the exact steps a package would run (secrets masked), without running anything.
pub async fn plan(c: ClientArgs, a: PackageArgs) -> Result<()> {
    let client = Client::new(&c)?;
    let id = client.server_id(&a.server)?;
    let v = client.post(
        &format!("/servers/{id}/plan/{}", urlencode(&a.package)),
        settings(&a.set),
    )?;
    if client.json {
        print_json(&v);
    } else {
        print!("{}", v["plan"].as_str().unwrap_or_default());
    }
    Ok(())
}
