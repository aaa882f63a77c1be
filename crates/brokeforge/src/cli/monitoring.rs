//! `brokeforge metrics`, `brokeforge channel` and `brokeforge alert`: what the monitoring collector
//! reports, where notifications go, and the rules that send them.

use anyhow::{Result, bail};
use brokeforge_core::time::utc_stamp;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::common::*;
use crate::client::{Client, ClientArgs};
use brokeforge_domain::monitoring::{AlertSpec, ChannelSpec};

#[derive(Args)]
pub struct MetricsArgs {
    #[arg(long)]
    server: String,
    /// How far back the series go: 1h, 24h, 7d (with --metric).
    #[arg(long, default_value = "1h")]
    since: String,
    /// Also print this metric's series (repeatable).
    #[arg(long)]
    metric: Vec<String>,
}

pub async fn metrics(c: ClientArgs, a: MetricsArgs) -> Result<()> {
    let client = Client::new(&c)?;
    let id = client.server_id(&a.server)?;
    let mut path = format!("/servers/{id}/metrics?since={}", urlencode(&a.since));
    if !a.metric.is_empty() {
        path.push_str(&format!("&metrics={}", urlencode(&a.metric.join(","))));
    }
    let v = client.get(&path)?;
    if client.json {
        print_json(&v);
        return Ok(());
    }
    if v["installed"] != true {
        println!(
            "monitoring is not installed: brokeforge install monitoring --server {} --follow",
            a.server
        );
        return Ok(());
    }
    match brokeforge_core::time::from_json(&v["last_report_at"]) {
        Some(t) => println!(
            "last report {} (every {} s)",
            utc_stamp(t),
            v["interval_seconds"]
        ),
        None => println!("no report yet"),
    }
    for s in v["samples"].as_array().into_iter().flatten() {
        println!("{:<40} {}", s["metric"].as_str().unwrap_or(""), s["value"]);
    }
    for series in v["series"].as_array().into_iter().flatten() {
        println!("\n{}:", series["metric"].as_str().unwrap_or(""));
        for p in series["points"].as_array().into_iter().flatten() {
            println!(
                "  {}  {}",
                utc_stamp(brokeforge_core::time::from_json(&p["at"]).unwrap_or(0)),
                p["value"]
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum ChannelCommand {
    /// The team's channels.
    List {
        /// A team by name (default: your personal team).
        #[arg(long)]
        team: Option<String>,
    },
    /// Add a channel: webhook (signed), slack, discord or telegram (`--url URL` is where it posts).
    Add {
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["webhook", "slack", "discord", "telegram", "email"])]
        kind: String,
        /// Where to post (webhook, slack, discord) or write (email), given as --url: in this command --url is the channel's
        /// address, and BrokeForge's comes from BROKEFORGE_URL or the saved login.
        #[arg(long, value_name = "URL")]
        channel_url: Option<String>,
        /// telegram: the chat id.
        #[arg(long)]
        chat_id: Option<String>,
        /// Read the secret from standard input: a webhook's signing key (else one is generated and shown
        /// once), a telegram bot token.
        #[arg(long)]
        secret_stdin: bool,
    },
    /// Delete a channel.
    Remove {
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        name: String,
    },
    /// Send a test message now and say how it went.
    Test {
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        name: String,
    },
    /// The channel's newest deliveries.
    Deliveries {
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        name: String,
    },
}

fn print_delivery(d: &Value) {
    println!(
        "{:<6} {:<20} {:<9} {:<8} {:<3} {}",
        d["id"],
        utc_stamp(brokeforge_core::time::from_json(&d["created_at"]).unwrap_or(0)),
        d["event"].as_str().unwrap_or(""),
        d["status"].as_str().unwrap_or(""),
        d["attempts"],
        d["error"].as_str().unwrap_or("")
    );
}

pub async fn channel(c: ClientArgs, cmd: ChannelCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        ChannelCommand::List { team } => {
            let t = team_id(&client, team.as_deref())?;
            let v = client.get(&format!("/teams/{t}/channels"))?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            println!("{:<20} {:<10} TARGET", "NAME", "KIND");
            for ch in v["channels"].as_array().into_iter().flatten() {
                println!(
                    "{:<20} {:<10} {}",
                    ch["name"].as_str().unwrap_or(""),
                    ch["kind"].as_str().unwrap_or(""),
                    ch["target"].as_str().unwrap_or("")
                );
            }
        }
        ChannelCommand::Add {
            team,
            name,
            kind,
            channel_url: url,
            chat_id,
            secret_stdin,
        } => {
            let t = team_id(&client, team.as_deref())?;
            let mut body = ChannelSpec {
                name: name.clone(),
                kind: kind.clone(),
                url,
                secret: None,
                chat_id,
            };
            if secret_stdin {
                body.secret = Some(password_from_stdin()?);
            } else if kind == "telegram" {
                bail!(
                    "give the bot token on standard input with --secret-stdin (never on the command line)"
                );
            }
            let v = client.post(&format!("/teams/{t}/channels"), body)?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            println!(
                "channel {} added ({})",
                v["channel"]["name"].as_str().unwrap_or(""),
                v["channel"]["target"].as_str().unwrap_or("")
            );
            if let Some(s) = v["signing_secret"].as_str() {
                println!("signing key (shown once; check X-BrokeForge-Signature with it): {s}");
            }
        }
        ChannelCommand::Remove { team, name } => {
            let t = team_id(&client, team.as_deref())?;
            client.delete(&format!("/teams/{t}/channels/{}", urlencode(&name)))?;
            if !client.json {
                println!("channel {name} deleted");
            }
        }
        ChannelCommand::Test { team, name } => {
            let t = team_id(&client, team.as_deref())?;
            let v = client.post_empty(&format!("/teams/{t}/channels/{}/test", urlencode(&name)))?;
            if client.json {
                print_json(&v);
            } else {
                print_delivery(&v["delivery"]);
            }
            if v["delivery"]["status"] != "sent" {
                bail!("the test message was not delivered");
            }
        }
        ChannelCommand::Deliveries { team, name } => {
            let t = team_id(&client, team.as_deref())?;
            let v = client.get(&format!(
                "/teams/{t}/channels/{}/deliveries",
                urlencode(&name)
            ))?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            for d in v["deliveries"].as_array().into_iter().flatten() {
                print_delivery(d);
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// A server's rules with their state: ok, pending, firing or resolved.
    List {
        #[arg(long)]
        server: String,
    },
    /// Add a rule: a metric above or below a value (for a while), a service down, no reports, a failed job.
    Add {
        #[arg(long)]
        server: String,
        #[arg(long, default_value = "metric", value_parser = ["metric", "service_down", "not_reporting", "job_failed", "drift", "cert_expiring"])]
        kind: String,
        /// The metric (disk_used_percent, memory_used_percent, load1, cpu_percent, ...).
        #[arg(long)]
        metric: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        above: Option<f64>,
        #[arg(long, allow_hyphen_values = true)]
        below: Option<f64>,
        /// How long it must hold: 90s, 5m, 1h.
        #[arg(long = "for")]
        for_duration: Option<String>,
        /// A channel of the server's team (default: all of them).
        #[arg(long)]
        channel: Option<String>,
        /// cert_expiring: fire when a site's certificate expires within this many days (default 14).
        #[arg(long)]
        days: Option<i64>,
    },
    /// Change a rule: what is given replaces that part (raise a threshold: --above 95).
    Set {
        #[arg(long)]
        server: String,
        #[arg(long)]
        rule: i64,
        #[arg(long, allow_hyphen_values = true)]
        above: Option<f64>,
        #[arg(long, allow_hyphen_values = true)]
        below: Option<f64>,
        #[arg(long = "for")]
        for_duration: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        days: Option<i64>,
    },
    /// Delete a rule (by the id `list` shows).
    Remove {
        #[arg(long)]
        server: String,
        #[arg(long)]
        rule: i64,
    },
}

pub async fn alert(c: ClientArgs, cmd: AlertCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        AlertCommand::List { server } => {
            let id = client.server_id(&server)?;
            let v = client.get(&format!("/servers/{id}/alerts"))?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            println!(
                "{:<6} {:<9} {:<45} {:<12} DETAIL",
                "ID", "STATE", "RULE", "CHANNEL"
            );
            for r in v["alerts"].as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<9} {:<45} {:<12} {}",
                    r["id"],
                    r["state"].as_str().unwrap_or(""),
                    r["description"].as_str().unwrap_or(""),
                    r["channel"].as_str().unwrap_or("(all)"),
                    r["detail"].as_str().unwrap_or("")
                );
            }
        }
        AlertCommand::Add {
            server,
            kind,
            metric,
            above,
            below,
            for_duration,
            channel,
            days,
        } => {
            let id = client.server_id(&server)?;
            let v = client.post(
                &format!("/servers/{id}/alerts"),
                AlertSpec {
                    kind: Some(kind.clone()),
                    metric: metric.clone(),
                    above,
                    below,
                    for_duration,
                    channel,
                    days,
                },
            )?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "alert {} added: {}",
                    v["alert"]["id"],
                    v["alert"]["description"].as_str().unwrap_or("")
                );
            }
        }
        AlertCommand::Set {
            server,
            rule,
            above,
            below,
            for_duration,
            channel,
            days,
        } => {
            let id = client.server_id(&server)?;
            let list = client.get(&format!("/servers/{id}/alerts"))?;
            let Some(r) = list["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["id"] == rule)
            else {
                bail!("{server} has no alert rule {rule} (see `brokeforge alert list`)");
            };
            // The current definition, with what was given in its place (a certificate rule's threshold
            // is its days).
            let certs = r["kind"] == "cert_expiring";
            let days = if certs {
                days.or_else(|| r["threshold"].as_f64().map(|d| d as i64))
            } else {
                days
            };
            let (above, below) = match (above, below) {
                (None, None) if certs => (None, None),
                (None, None) if r["comparison"] == "below" => (None, r["threshold"].as_f64()),
                (None, None) => (r["threshold"].as_f64(), None),
                given => given,
            };
            let for_duration =
                for_duration.or_else(|| r["for_seconds"].as_i64().map(|s| format!("{s}s")));
            let channel = channel.or_else(|| r["channel"].as_str().map(String::from));
            let v = client.put(
                &format!("/servers/{id}/alerts/{rule}"),
                AlertSpec {
                    kind: r["kind"].as_str().map(String::from),
                    metric: r["metric"].as_str().map(String::from),
                    above,
                    below,
                    for_duration,
                    channel,
                    days,
                },
            )?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "alert {rule}: {}",
                    v["alert"]["description"].as_str().unwrap_or("")
                );
            }
        }
        AlertCommand::Remove { server, rule } => {
            let id = client.server_id(&server)?;
            client.delete(&format!("/servers/{id}/alerts/{rule}"))?;
            if !client.json {
                println!("alert {rule} deleted");
            }
        }
    }
    Ok(())
}

/// What `site check` does.
pub enum CheckAction {
    Set,
    Status,
    Remove,
}

impl CheckAction {
    pub fn from_flags(status: bool, remove: bool) -> CheckAction {
        match (status, remove) {
            (true, _) => CheckAction::Status,
            (_, true) => CheckAction::Remove,
            _ => CheckAction::Set,
        }
    }
}

/// `brokeforge site check`: set, show or remove a site's health check.
pub fn site_check(
    client: &Client,
    site: i64,
    domain: &str,
    action: CheckAction,
    spec: brokeforge_domain::monitoring::CheckSpec,
) -> Result<()> {
    let path = format!("/sites/{site}/check");
    let v = match action {
        CheckAction::Remove => {
            client.delete(&path)?;
            if !client.json {
                println!("{domain} is no longer checked");
            }
            return Ok(());
        }
        CheckAction::Status => client.get(&format!("{path}?since=1h"))?,
        CheckAction::Set => client.put(&path, spec)?,
    };
    if client.json {
        print_json(&v);
        return Ok(());
    }
    let c = &v["check"];
    println!(
        "{domain}{} every {} s, expecting {}: {}",
        c["path"].as_str().unwrap_or(""),
        c["interval_seconds"],
        c["expect"],
        c["state"].as_str().unwrap_or("")
    );
    match c["after_deploy"].as_str() {
        Some("fail") => println!("after each deploy: a failed check fails the deployment"),
        Some("rollback") => {
            println!("after each deploy: a failed check fails the deployment and rolls it back")
        }
        _ => {}
    }
    if let Some(at) = brokeforge_core::time::from_json(&c["last_checked_at"]) {
        println!(
            "last check {}: {} in {} ms {}",
            utc_stamp(at),
            c["last_status"],
            c["last_ms"],
            c["last_error"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
