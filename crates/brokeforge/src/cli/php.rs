//! `brokeforge php`: a PHP version's php.ini settings and extensions (read live, changed through jobs).

use anyhow::{Result, bail};
use clap::Subcommand;

use super::common::*;
use crate::client::{Client, ClientArgs};
use brokeforge_web::api::types::{ExtensionsBody, SettingsBody};

#[derive(Subcommand)]
pub enum PhpCommand {
    /// Show a version's settings, or change them with --set/--unset.
    Settings {
        #[arg(long)]
        server: String,
        /// The PHP version (e.g. 8.2).
        #[arg(long)]
        version: String,
        /// NAME=VALUE (repeatable), e.g. memory_limit=512M.
        #[arg(long = "set")]
        set: Vec<String>,
        /// Go back to the web server's default for NAME (repeatable).
        #[arg(long = "unset")]
        unset: Vec<String>,
        #[arg(long)]
        follow: bool,
    },
    /// List the modules a version loads, or install/remove extensions with --add/--remove.
    Extensions {
        #[arg(long)]
        server: String,
        #[arg(long)]
        version: String,
        /// An extension to install (repeatable), e.g. intl.
        #[arg(long = "add")]
        add: Vec<String>,
        /// An extension to remove (repeatable).
        #[arg(long = "remove")]
        remove: Vec<String>,
        #[arg(long)]
        follow: bool,
    },
}

pub async fn php(c: ClientArgs, cmd: PhpCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        PhpCommand::Settings {
            server,
            version,
            set,
            unset,
            follow,
        } => {
            let id = client.server_id(&server)?;
            let path = format!("/servers/{id}/php/{}/settings", urlencode(version.trim()));
            if set.is_empty() && unset.is_empty() {
                let v = client.get(&path)?;
                if client.json {
                    print_json(&v);
                    return Ok(());
                }
                println!(
                    "PHP {} (set in BrokeForge marked *)",
                    v["version"].as_str().unwrap_or_default()
                );
                for (k, val) in v["effective"].as_object().into_iter().flatten() {
                    let mark = if v["set"].get(k).is_some() { "*" } else { " " };
                    println!("{mark} {k:<34} {}", val.as_str().unwrap_or_default());
                }
                return Ok(());
            }
            let mut values = std::collections::BTreeMap::new();
            for s in set {
                let Some((k, v)) = s.split_once('=') else {
                    bail!("--set takes NAME=VALUE, like memory_limit=512M (got `{s}`)");
                };
                values.insert(k.trim().to_string(), v.trim().to_string());
            }
            let v = client.put(&path, SettingsBody { set: values, unset })?;
            job_result(&client, id, &job_of(&v)?, follow).await?;
        }
        PhpCommand::Extensions {
            server,
            version,
            add,
            remove,
            follow,
        } => {
            let id = client.server_id(&server)?;
            let path = format!("/servers/{id}/php/{}/extensions", urlencode(version.trim()));
            if add.is_empty() && remove.is_empty() {
                let v = client.get(&path)?;
                if client.json {
                    print_json(&v);
                } else {
                    for m in v["modules"].as_array().into_iter().flatten() {
                        println!("{}", m.as_str().unwrap_or_default());
                    }
                }
                return Ok(());
            }
            let v = client.post(&path, ExtensionsBody { add, remove })?;
            job_result(&client, id, &job_of(&v)?, follow).await?;
        }
    }
    Ok(())
}
