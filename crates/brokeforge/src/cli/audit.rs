//! `brokeforge audit`: the audit log, newest first (JSON lines with --json).

use anyhow::{Result, anyhow};
use brokeforge_core::time::{now_ms, rfc3339, utc_stamp};
use clap::Args;

use super::common::{team_id, urlencode};
use crate::client::{Client, ClientArgs};

#[derive(Args)]
pub struct AuditArgs {
    /// A server's name or id.
    #[arg(long)]
    pub server: Option<String>,
    /// A user's email.
    #[arg(long)]
    pub user: Option<String>,
    /// A team's name or id: what happened on its servers.
    #[arg(long)]
    pub team: Option<String>,
    /// Text the action contains (deploy, services, ...).
    #[arg(long)]
    pub action: Option<String>,
    /// How far back: 30m, 12h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

/// `30m`, `12h`, `7d`, `45s` in milliseconds.
pub fn duration_ms(text: &str) -> Result<i64> {
    let t = text.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = n
        .parse()
        .map_err(|_| anyhow!("--since {text}: give a number and a unit (30m, 12h, 7d)"))?;
    let per = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(anyhow!("--since {text}: the unit is s, m, h or d")),
    };
    Ok(n * per)
}

pub async fn audit(c: ClientArgs, a: AuditArgs) -> Result<()> {
    let client = Client::new(&c)?;
    let mut query = vec![format!("limit={}", a.limit)];
    if let Some(s) = &a.server {
        query.push(format!("server={}", client.server_id(s)?));
    }
    if let Some(t) = &a.team {
        let id = team_id(&client, Some(t))?;
        query.push(format!("team={id}"));
    }
    if let Some(u) = &a.user {
        query.push(format!("user={}", urlencode(u)));
    }
    if let Some(x) = &a.action {
        query.push(format!("action={}", urlencode(x)));
    }
    if let Some(s) = &a.since {
        query.push(format!("since={}", rfc3339(now_ms() - duration_ms(s)?)));
    }
    let v = client.get(&format!("/audit?{}", query.join("&")))?;
    let entries = v["entries"].as_array().cloned().unwrap_or_default();
    if client.json {
        for e in &entries {
            println!("{e}");
        }
        return Ok(());
    }
    if entries.is_empty() {
        eprintln!("no entries");
    }
    for e in &entries {
        println!(
            "{}  {:<32} {:<44} {} {}  from {}",
            utc_stamp(brokeforge_core::time::from_json(&e["at"]).unwrap_or(0)),
            e["actor"].as_str().unwrap_or_default(),
            e["action"].as_str().unwrap_or_default(),
            e["target"].as_str().unwrap_or_default(),
            e["status"],
            e["ip"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::duration_ms("90m").unwrap(), 5_400_000);
        assert_eq!(super::duration_ms("7d").unwrap(), 604_800_000);
        assert!(super::duration_ms("7w").is_err());
        assert!(super::duration_ms("h").is_err());
    }
}
