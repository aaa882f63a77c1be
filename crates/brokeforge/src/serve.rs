//! `brokeforge serve`: the web app, API and SSE (see the `brokeforge-web` crate) with in-process job workers.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use brokeforge_packages::jobs::{Worker, WorkerConfig};
use brokeforge_web::{AppState, WebConfig};
use tokio_util::sync::CancellationToken;

/// Web settings from the environment: `BROKEFORGE_PUBLIC_URL` (the URL servers and browsers use; https
/// makes cookies Secure), `BROKEFORGE_TRUST_PROXY=1` (take client addresses from X-Forwarded-For),
/// `BROKEFORGE_INSECURE_PROVISIONING=1` (hand out the one-line script over plain HTTP: test networks only).
pub fn web_config(tls: bool) -> WebConfig {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    WebConfig {
        public_url: env("BROKEFORGE_PUBLIC_URL"),
        secure_cookies: tls || env("BROKEFORGE_SECURE_COOKIES").as_deref() == Some("1"),
        trust_proxy: env("BROKEFORGE_TRUST_PROXY").as_deref() == Some("1"),
        metrics_token: env("BROKEFORGE_METRICS_TOKEN"),
        tls,
        insecure_provisioning: env("BROKEFORGE_INSECURE_PROVISIONING").as_deref() == Some("1"),
        refuse_internal_addresses: env("BROKEFORGE_REFUSE_PRIVATE_ADDRESSES").as_deref()
            == Some("1"),
        allow_http_channels: env("BROKEFORGE_ALLOW_HTTP_CHANNELS").as_deref() == Some("1"),
        telegram_api: env("BROKEFORGE_TELEGRAM_API"),
        smtp: None,
    }
}

/// The mail relay for email notifications: `BROKEFORGE_SMTP_URL` (smtp://user:pass@host:587?tls=required,
/// smtps://...:465) and `BROKEFORGE_SMTP_FROM`; a half or wrong setting stops the start with the reason.
fn smtp_from_env() -> Result<Option<std::sync::Arc<brokeforge_domain::monitoring::Smtp>>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (env("BROKEFORGE_SMTP_URL"), env("BROKEFORGE_SMTP_FROM")) {
        (None, None) => Ok(None),
        (Some(url), Some(from)) => Ok(Some(std::sync::Arc::new(
            brokeforge_domain::monitoring::Smtp::new(&url, &from)?,
        ))),
        _ => anyhow::bail!("set both BROKEFORGE_SMTP_URL and BROKEFORGE_SMTP_FROM (or neither)"),
    }
}

pub async fn serve(bind: &str, worker: WorkerConfig) -> Result<()> {
    let tls_mode = crate::tls::TlsMode::from_env()?;
    let retention = crate::config::retention()?;
    let store = crate::config::open_store().await?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    tokio::spawn(crate::shutdown_on_signal(stop.clone()));
    let tls = crate::tls::start(&tls_mode, &store, stop.clone()).await?;
    let workers = tokio::spawn(
        Worker::new(store.clone(), brokeforge_packages::registry(), worker).run(stop.clone()),
    );
    let activity = store.spawn_activity_listener();
    let housekeeping = {
        let domain = brokeforge_domain::Domain::new(store.clone());
        let stop = stop.clone();
        tokio::spawn(async move { domain.run_maintenance(retention, stop).await })
    };
    let backup_schedule = {
        let domain = brokeforge_domain::Domain::new(store.clone());
        let stop = stop.clone();
        tokio::spawn(async move { domain.run_backup_schedule(stop).await })
    };
    let recipe_runs = {
        let domain = brokeforge_domain::Domain::new(store.clone());
        let stop = stop.clone();
        tokio::spawn(async move { domain.run_recipe_runs(stop).await })
    };
    let drift_schedule = {
        let domain = brokeforge_domain::Domain::new(store.clone());
        let stop = stop.clone();
        let every = crate::config::drift_check_every()?;
        tokio::spawn(async move { domain.run_drift_schedule(every, stop).await })
    };
    let self_backup = tokio::spawn(crate::selfbackup::scheduled::run_schedule(
        store.clone(),
        stop.clone(),
    ));
    let mut config = web_config(tls.is_some());
    config.smtp = smtp_from_env()?;
    // Also at connect time, whatever a name resolves to then.
    brokeforge_ssh::refuse_internal_addresses(config.refuse_internal_addresses);
    let mut state = AppState::new(store.clone(), config);
    state.shutdown = stop.clone();
    let alerts = {
        let domain = state.domain.clone();
        let stop = stop.clone();
        tokio::spawn(async move { domain.run_alerts(stop).await })
    };
    // Whoever started us may have stopped reading stdout: a closed pipe must not stop the server.
    use std::io::Write;
    let mut out = std::io::stdout();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let _ = writeln!(out, "BrokeForge is listening on {scheme}://{addr}");
    if store.count_users().await? == 0 {
        let _ = writeln!(
            out,
            "No account yet: open the address above to create the administrator."
        );
    }
    let _ = out.flush();
    let http_stop = stop.clone();
    let app = brokeforge_web::router(state).into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
            .context("server error")?,
        Some(config) => {
            let handle = axum_server::Handle::new();
            let on_stop = handle.clone();
            tokio::spawn(async move {
                http_stop.cancelled().await;
                on_stop.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            axum_server::from_tcp_rustls(
                listener.into_std()?,
                axum_server::tls_rustls::RustlsConfig::from_config(config),
            )?
            .handle(handle)
            .serve(app)
            .await
            .context("server error")?
        }
    }
    workers.await.context("worker task")??;
    let _ = housekeeping.await;
    let _ = backup_schedule.await;
    let _ = alerts.await;
    let _ = self_backup.await;
    let _ = recipe_runs.await;
    let _ = drift_schedule.await;
    if let Some(a) = activity {
        a.abort();
    }
    store.close().await;
    Ok(())
}
