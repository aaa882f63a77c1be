//! `brokeforge firewall`: the server's ufw rules (read live), added and removed through jobs.

use anyhow::Result;
use clap::Subcommand;

use super::common::*;
use crate::client::{Client, ClientArgs};
use brokeforge_packages::services::server::firewall::RuleSpec;

#[derive(Subcommand)]
pub enum FirewallCommand {
    /// The rules ufw has now, with their ids and where they came from.
    List {
        #[arg(long)]
        server: String,
    },
    /// Add a rule (allow by default).
    Add {
        #[arg(long)]
        server: String,
        /// A port (8080) or a range (8000-8100).
        #[arg(long)]
        port: String,
        /// tcp, udp or any.
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// An address or CIDR network; anywhere when left out.
        #[arg(long)]
        from: Option<String>,
        /// What the rule is for (defaults to "port-PORT").
        #[arg(long)]
        name: Option<String>,
        /// Deny instead of allow.
        #[arg(long)]
        deny: bool,
        #[arg(long)]
        follow: bool,
    },
    /// Remove a rule BrokeForge added (by the id `list` shows).
    Remove {
        #[arg(long)]
        server: String,
        #[arg(long)]
        rule: String,
        #[arg(long)]
        follow: bool,
    },
}

pub async fn firewall(c: ClientArgs, cmd: FirewallCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        FirewallCommand::List { server } => {
            let id = client.server_id(&server)?;
            let v = client.get(&format!("/servers/{id}/firewall"))?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "ufw is {}",
                if v["active"] == true {
                    "active"
                } else {
                    "INACTIVE"
                }
            );
            println!(
                "{:<10} {:<6} {:<5} {:<12} {:<20} {:<10} {:<8} NAME",
                "ID", "ACTION", "PROTO", "PORT", "FROM", "ORIGIN", "FAMILY"
            );
            for r in v["rules"].as_array().into_iter().flatten() {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                let families: Vec<&str> = r["families"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str())
                    .collect();
                let mut name = s("name");
                if !s("note").is_empty() {
                    name = format!("{name} ({})", s("note"));
                }
                println!(
                    "{:<10} {:<6} {:<5} {:<12} {:<20} {:<10} {:<8} {name}",
                    s("id"),
                    s("action"),
                    s("protocol"),
                    s("port"),
                    s("source"),
                    s("origin"),
                    families.join("+")
                );
            }
        }
        FirewallCommand::Add {
            server,
            port,
            protocol,
            from,
            name,
            deny,
            follow,
        } => {
            let id = client.server_id(&server)?;
            let name = name.unwrap_or_else(|| format!("port-{}", port.replace(':', "-")));
            let v = client.post(
                &format!("/servers/{id}/firewall"),
                RuleSpec {
                    name,
                    port,
                    protocol,
                    source: from.unwrap_or_default(),
                    action: if deny { "deny" } else { "allow" }.to_string(),
                },
            )?;
            job_result(&client, id, &job_of(&v)?, follow).await?;
        }
        FirewallCommand::Remove {
            server,
            rule,
            follow,
        } => {
            let id = client.server_id(&server)?;
            let v = client.delete(&format!(
                "/servers/{id}/firewall/{}",
                urlencode(rule.trim())
            ))?;
            job_result(&client, id, &job_of(&v)?, follow).await?;
        }
    }
    Ok(())
}
