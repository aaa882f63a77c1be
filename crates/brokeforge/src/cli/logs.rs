//! `brokeforge logs`: a server's or a site's logs, printed as they come off the server (nothing is kept).

use anyhow::{Result, anyhow};
use brokeforge_core::time::{now_ms, rfc3339};
use clap::Args;

use super::audit::duration_ms;
use super::common::urlencode;
use crate::client::{Client, ClientArgs};

#[derive(Args)]
pub struct LogsArgs {
    #[arg(long)]
    pub server: String,
    /// A site's logs instead of the server's (its domain).
    #[arg(long)]
    pub site: Option<String>,
    #[arg(long, value_parser = ["nginx-access", "nginx-error", "php-fpm", "unit"])]
    pub kind: String,
    /// The unit whose journal to read (with --kind unit): nginx, php8.2-fpm, mariadb, ...
    #[arg(long)]
    pub unit: Option<String>,
    /// The newest N lines.
    #[arg(long, default_value_t = 200)]
    pub lines: u32,
    /// Only lines from this long ago on: 30m, 12h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines older than this long ago: 5m, 1h.
    #[arg(long)]
    pub until: Option<String>,
    /// Keep printing new lines until interrupted (at most an hour).
    #[arg(long)]
    pub follow: bool,
}

pub async fn logs(c: ClientArgs, a: LogsArgs) -> Result<()> {
    let client = Client::new(&c)?;
    let id = client.server_id(&a.server)?;
    let mut q = vec![
        format!("kind={}", urlencode(&a.kind)),
        format!("lines={}", a.lines),
    ];
    if let Some(s) = &a.site {
        q.push(format!("site={}", urlencode(s)));
    }
    if let Some(u) = &a.unit {
        q.push(format!("unit={}", urlencode(u)));
    }
    let now = now_ms();
    if let Some(s) = &a.since {
        q.push(format!("since={}", rfc3339(now - duration_ms(s)?)));
    }
    if let Some(u) = &a.until {
        let ms = duration_ms(u)
            .map_err(|e| anyhow!("{}", e.to_string().replace("--since", "--until")))?;
        q.push(format!("until={}", rfc3339(now - ms)));
    }
    if a.follow {
        q.push("follow=true".into());
    }
    let path = format!("/servers/{id}/logs?{}", q.join("&"));
    // Blocking reads of the stream, off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut out = std::io::stdout().lock();
        client.download(&path, &mut out).map(|_| ())
    })
    .await??;
    Ok(())
}
