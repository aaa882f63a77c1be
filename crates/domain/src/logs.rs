//! A server's logs, read or followed live over SSH and passed straight to the caller: nothing of them is
//! stored (a download is the caller keeping what it reads).

use std::time::Duration;

use brokeforge_core::{ServiceStatus, ValidationError};
use brokeforge_packages::services::server::drift::service_parts;
use brokeforge_packages::services::server::logs::{
    DEFAULT_LINES, FOLLOW_SECS, LogKind, LogQuery, LogSource, TimeFilter, check_unit, file_of,
    units_of,
};
use brokeforge_packages::services::sites::config::SiteConfig;
use brokeforge_store::{Server, ServerSite};
use bytes::Bytes;

use crate::{Domain, DomainError, DomainResult};

/// What a caller asks to read.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct LogRequest {
    pub kind: String,
    /// A site of the server, by domain or id.
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub lines: Option<u32>,
    /// RFC 3339 (Unix milliseconds are read too).
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub since: Option<i64>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub until: Option<i64>,
    #[serde(default)]
    pub follow: bool,
}

pub type LogStream = tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>;

impl Domain {
    /// The units BrokeForge manages on `server`, by the services and sites it put there.
    pub async fn managed_units(&self, server: &Server) -> DomainResult<Vec<String>> {
        let mut units: Vec<String> = vec!["ssh".into(), "cron".into()];
        let php = self.php_versions(server).await?;
        for s in self.store.services(server.id).await? {
            if s.status == ServiceStatus::Active {
                units.extend(service_parts(&s.service_name, &php).1);
            }
        }
        for site in self.store.sites(server.id).await? {
            let config = SiteConfig::of(&site);
            if config.kind == brokeforge_packages::services::sites::config::SiteKind::Node {
                units.push(brokeforge_packages::services::sites::common::app_unit(
                    site.id,
                ));
            }
            for i in 0..config.tasks.daemons.len() {
                units.push(format!("brokeforge-site-{}-daemon-{i}", site.id));
            }
        }
        Ok(units)
    }

    async fn site_named(&self, server: &Server, name: &str) -> DomainResult<ServerSite> {
        let name = name.trim();
        self.store
            .sites(server.id)
            .await?
            .into_iter()
            .find(|s| s.domain == name || s.id.to_string() == name)
            .ok_or_else(|| {
                DomainError::invalid("site", format!("{name} is not a site of {}", server.name))
            })
    }

    /// What `req` reads, checked: nothing runs for a bad request.
    pub async fn log_query(
        &self,
        server: &Server,
        req: &LogRequest,
    ) -> DomainResult<(LogQuery, String)> {
        let kind = LogKind::parse(&req.kind)?;
        let site = match req.site.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(self.site_named(server, s).await?),
            None => None,
        };
        let unit = req.unit.as_deref().filter(|u| !u.trim().is_empty());
        let (source, name) = match kind {
            LogKind::Unit => {
                let unit =
                    unit.ok_or_else(|| DomainError::invalid("unit", "name the unit (--unit)"))?;
                let managed = self.managed_units(server).await?;
                let patterns = units_of(unit, &managed)?;
                (LogSource::Units(patterns), check_unit(unit)?)
            }
            _ => {
                if unit.is_some() {
                    return Err(ValidationError::new("unit", "only unit logs take a unit").into());
                }
                let php = match &site {
                    Some(s) => s.php_version.clone(),
                    None => None,
                };
                let php = match php {
                    Some(v) => Some(v),
                    None => self.php_versions(server).await?.into_iter().next(),
                };
                let user = site
                    .as_ref()
                    .map(brokeforge_packages::services::sites::common::SiteUser::of);
                let file = file_of(
                    kind,
                    site.as_ref()
                        .zip(user.as_ref())
                        .map(|(s, u)| (s.domain.as_str(), u.pool())),
                    php.as_deref(),
                )?;
                let name = file
                    .rsplit('/')
                    .next()
                    .unwrap_or("log")
                    .trim_end_matches(".log")
                    .to_string();
                (LogSource::File(file), name)
            }
        };
        let query = LogQuery {
            source,
            lines: req.lines.unwrap_or(DEFAULT_LINES),
            since: req.since,
            until: req.until,
            follow: req.follow,
        };
        query.check()?;
        Ok((query, format!("{}-{name}.log", server.name)))
    }

    /// Read (or follow) a log: a name for a download, and its text as it comes off the server. A read that
    /// fails (no such log, server unreachable) is an error here, not a cut body; so is a follow that fails
    /// at once. A follow ends when the receiver is dropped (the command on the server stops with it) or
    /// after an hour.
    pub async fn logs(
        &self,
        server: &Server,
        req: &LogRequest,
    ) -> DomainResult<(String, LogStream)> {
        let (query, name) = self.log_query(server, req).await?;
        let follow = query.follow;
        let mut body = self.spawn_log(server, query)?;
        let failed = |e: std::io::Error| DomainError::Remote {
            code: "command_failed",
            message: e.to_string(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        if !follow {
            let mut all = Vec::new();
            while let Some(chunk) = body.recv().await {
                all.extend_from_slice(&chunk.map_err(failed)?);
            }
            let _ = tx.send(Ok(Bytes::from(all))).await;
            return Ok((name, rx));
        }
        match tokio::time::timeout(Duration::from_secs(3), body.recv()).await {
            Ok(Some(Err(e))) => return Err(failed(e)),
            Ok(Some(Ok(first))) => {
                let _ = tx.send(Ok(first)).await;
            }
            Ok(None) => return Ok((name, rx)),
            Err(_) => {}
        }
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    c = body.recv() => match c {
                        Some(c) => if tx.send(c).await.is_err() { return },
                        None => return,
                    },
                    // Dropping `body` tells the reader its caller left.
                    _ = tx.closed() => return,
                }
            }
        });
        Ok((name, rx))
    }

    fn spawn_log(&self, server: &Server, query: LogQuery) -> DomainResult<LogStream> {
        let command = query.command()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let (out, body) = tokio::sync::mpsc::channel(16);
        let executor = self.executor.clone();
        let ctx = brokeforge_packages::RunContext::new(server.clone());
        let cancel = ctx.cancel.clone();
        let timeout = Duration::from_secs(if query.follow { FOLLOW_SECS } else { 120 });
        let server_id = server.id;
        tokio::spawn(async move {
            let read = async move {
                let r = executor
                    .stream(
                        &ctx,
                        brokeforge_core::CredentialKind::Root,
                        &command,
                        None,
                        Vec::new(),
                        timeout,
                        &tx,
                    )
                    .await;
                drop(tx);
                r
            };
            let forward = {
                let out = out.clone();
                async move {
                    let mut filter = query
                        .filters_by_time()
                        .then(|| (TimeFilter::new(query.since, query.until), Vec::<u8>::new()));
                    // A time-filtered read keeps only its newest `lines` lines.
                    let mut kept: std::collections::VecDeque<Vec<u8>> = Default::default();
                    loop {
                        let chunk = tokio::select! {
                            c = rx.recv() => c,
                            // The caller left: stop the command instead of waiting for its next line.
                            _ = out.closed() => { cancel.cancel(); return; }
                        };
                        let Some(chunk) = chunk else { break };
                        let Some((f, partial)) = filter.as_mut() else {
                            if out.send(Ok(chunk)).await.is_err() {
                                cancel.cancel();
                                return;
                            }
                            continue;
                        };
                        partial.extend_from_slice(&chunk);
                        let mut lines = Vec::new();
                        while let Some(n) = partial.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = partial.drain(..=n).collect();
                            if f.keep(&String::from_utf8_lossy(&line)) {
                                lines.push(line);
                            }
                        }
                        if query.follow {
                            if !lines.is_empty()
                                && out.send(Ok(Bytes::from(lines.concat()))).await.is_err()
                            {
                                cancel.cancel();
                                return;
                            }
                        } else {
                            for l in lines {
                                kept.push_back(l);
                                if kept.len() > query.lines as usize {
                                    kept.pop_front();
                                }
                            }
                        }
                    }
                    if !kept.is_empty() {
                        let all: Vec<u8> = kept.into_iter().flatten().collect();
                        let _ = out.send(Ok(Bytes::from(all))).await;
                    }
                }
            };
            let (result, ()) = tokio::join!(read, forward);
            match result {
                Ok(()) | Err(brokeforge_packages::PackageError::Cancelled) => {}
                Err(e) => {
                    tracing::info!(server_id, error = %e, "a log read failed");
                    let _ = out.send(Err(std::io::Error::other(e.to_string()))).await;
                }
            }
        });
        Ok(body)
    }
}
