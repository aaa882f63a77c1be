//! The `brokeforge` binary.

mod admin;
mod bench;
mod cli;
mod client;
mod config;
mod doctor;
mod selfbackup;
mod serve;
mod tls;

use std::time::Duration;

use anyhow::Result;
use brokeforge_packages::jobs::{Worker, WorkerConfig};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// BrokeForge turns fresh Linux servers into hosts for PHP sites, over SSH.
///
/// Data lives in BROKEFORGE_DATA_DIR (default ~/.local/share/brokeforge): the SQLite database
/// `brokeforge.db` and the master key `master.key` that encrypts every stored secret. Set
/// BROKEFORGE_DATABASE_URL=postgres://... to use PostgreSQL, BROKEFORGE_MASTER_KEY to supply the key.
#[derive(Parser)]
#[command(name = "brokeforge", version, about, long_about)]
struct Cli {
    /// A configuration file of `BROKEFORGE_...=value` lines (default: BROKEFORGE_CONFIG, else
    /// /etc/brokeforge/brokeforge.conf when it exists). Variables set in the environment win.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    client: client::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web app and API with in-process job workers (migrates the database first).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "BROKEFORGE_BIND")]
        bind: String,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Run job workers only (for several nodes sharing one PostgreSQL database).
    Worker {
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Write a consistent copy of BrokeForge's own database while it runs (SQLite; --passphrase-stdin seals
    /// the master key in with it).
    BackupSelf(selfbackup::BackupSelfArgs),
    /// Bring a backup-self copy back into an empty data directory.
    RestoreSelf(selfbackup::RestoreSelfArgs),
    /// Check this installation (settings, TLS, disk, database, schema, master key, clock, workers) and say
    /// what to fix; exit status 1 when something needs fixing. Changes nothing.
    Doctor,
    /// Manage accounts on the local database: create users and API tokens, reset passwords.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// List the packages that can be installed, with their parameters and milestones (--json for JSON);
    /// with --server, the ones that server's OS cannot take say why.
    Catalogue {
        #[arg(long)]
        server: Option<String>,
    },
    /// Sign in to a BrokeForge server and save an API token for the client commands.
    Login(cli::login::LoginArgs),
    /// Servers: add, list, show, script, remove, pin-host-key.
    Server {
        #[command(subcommand)]
        command: cli::server::ServerCommand,
    },
    /// Install a package on a server (a queued job; --follow waits with progress).
    Install(cli::package::PackageArgs),
    /// Remove a package from a server.
    Remove(cli::package::PackageArgs),
    /// Print the exact steps a package would run (secrets masked), without running anything.
    Plan(cli::package::PackageArgs),
    /// The audit log: who did what, from where, when (newest first; --json for JSON lines).
    Audit(cli::audit::AuditArgs),
    /// Your account: two-factor sign-in.
    Account {
        #[command(subcommand)]
        command: cli::account::AccountCommand,
    },
    /// Teams: create, invite (prints the link), members and roles, leave, require two-factor sign-in.
    Team {
        #[command(subcommand)]
        command: cli::team::TeamCommand,
    },
    /// The newest metrics a server's collector reported (install the monitoring package first).
    Metrics(cli::monitoring::MetricsArgs),
    /// Notification channels of a team: webhook (signed), slack, discord, telegram.
    Channel {
        #[command(subcommand)]
        command: cli::monitoring::ChannelCommand,
    },
    /// Alert rules of a server and their state.
    Alert {
        #[command(subcommand)]
        command: cli::monitoring::AlertCommand,
    },
    /// Recipes: named scripts run on many servers in waves (a canary first), with a plan and per-server results.
    Recipe {
        #[command(subcommand)]
        command: cli::recipe::RecipeCommand,
    },
    /// A PHP version's php.ini settings and extensions.
    Php {
        #[command(subcommand)]
        command: cli::php::PhpCommand,
    },
    /// Drift: compare what BrokeForge put on a server with what is there now (--follow prints the report);
    /// --repair puts back what drifted; --by-hand ITEM leaves an item to you.
    Check(cli::check::CheckArgs),
    /// Firewall rules (ufw on the server is the truth): list, add, remove.
    Firewall {
        #[command(subcommand)]
        command: cli::firewall::FirewallCommand,
    },
    /// A server's or site's logs: nginx, PHP-FPM, or a unit's journal (--follow to watch live).
    Logs(cli::logs::LogsArgs),
    /// Database schemas and users.
    Db {
        #[command(subcommand)]
        command: cli::db::DbCommand,
    },
    /// Backups: storages, plans, run, snapshots, restore, verify (restore drill), recovery kit.
    Backup {
        #[command(subcommand)]
        command: cli::backup::BackupCommand,
    },
    /// Sites: create, deploy, rollback, run commands, .env, deploy script.
    Site {
        #[command(subcommand)]
        command: cli::site::SiteCommand,
    },
    /// A server's provision events (--follow streams new ones).
    Events(cli::jobs::EventsArgs),
    /// Jobs: list, show, cancel, retry.
    Jobs {
        #[command(subcommand)]
        command: cli::jobs::JobsCommand,
    },
    /// Print shell completions: `brokeforge completions bash > /etc/bash_completion.d/brokeforge`.
    Completions { shell: clap_complete::Shell },
    /// Measure the execution path (SSH fleet) or the job queue alone, against a baseline in the same run.
    Bench(bench::BenchArgs),
}

#[derive(Args, Clone)]
struct WorkerArgs {
    /// Jobs run at once (at most one per server).
    #[arg(long, default_value_t = 8, env = "BROKEFORGE_WORKER_CONCURRENCY")]
    concurrency: usize,
    /// Seconds a job's lease lasts without a heartbeat before another worker may take the job over.
    #[arg(long, default_value_t = 30, env = "BROKEFORGE_LEASE_SECONDS")]
    lease_seconds: u64,
    /// Seconds running jobs get to finish on shutdown before their leases are released.
    #[arg(long, default_value_t = 30, env = "BROKEFORGE_SHUTDOWN_GRACE_SECONDS")]
    grace_seconds: u64,
}

impl WorkerArgs {
    fn config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency.max(1),
            lease: Duration::from_secs(self.lease_seconds.max(1)),
            grace: Duration::from_secs(self.grace_seconds),
            ..WorkerConfig::default()
        }
    }
}

/// The arguments, with `channel add --url` meaning the channel's address (the documented interface), not
/// BrokeForge's (the global `--url`): that command takes BrokeForge's from BROKEFORGE_URL or the login.
fn args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(i) = words
        .windows(2)
        .position(|w| w[0] == "channel" && w[1] == "add")
    {
        for (j, w) in words.iter().enumerate().skip(i + 2) {
            if w == "--url" {
                args[j] = "--channel-url".into();
            } else if let Some(v) = w.strip_prefix("--url=") {
                args[j] = format!("--channel-url={v}").into();
            }
        }
    }
    args
}

fn main() {
    let cli = Cli::parse_from(args());
    // The configuration file first: what it sets, the logger and everything else read from the environment.
    let loaded = match config::load_file(cli.config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    // Again: options that default from the environment (`--bind` from BROKEFORGE_BIND) must see what the file
    // set, and the file's path was itself an option.
    let cli = Cli::parse_from(args());
    // Rust ignores SIGPIPE, so a client command piped into `head` would panic on its next print. Client
    // commands take the default back and end quietly when their reader goes, as Unix tools do; the
    // long-running ones keep ignoring it (a closed socket or child pipe is an error they handle).
    if !matches!(
        cli.command,
        Command::Serve { .. } | Command::Worker { .. } | Command::Bench(_)
    ) {
        // SAFETY: called before any thread starts; SIG_DFL is a valid disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("BROKEFORGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("BROKEFORGE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    if let Some(path) = loaded {
        tracing::debug!(path = %path.display(), "configuration file loaded");
    }
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(open_files = n, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        if let Some(code) = e.downcast_ref::<cli::common::ExitWith>() {
            std::process::exit(code.0);
        }
        if let Some(api) = e.downcast_ref::<client::ApiFailure>() {
            // The server's stable code helps scripts; the message says what to do.
            eprintln!("error: {} [{} {}]", api.message, api.status, api.code);
            std::process::exit(1);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { bind, worker } => serve::serve(&bind, worker.config()).await,
        Command::Worker { worker } => {
            let store = config::open_store().await?;
            brokeforge_ssh::refuse_internal_addresses(
                serve::web_config(false).refuse_internal_addresses,
            );
            let stop = CancellationToken::new();
            tokio::spawn(shutdown_on_signal(stop.clone()));
            let cfg = worker.config();
            println!("worker {} running {} jobs at once", cfg.id, cfg.concurrency);
            Worker::new(store.clone(), brokeforge_packages::registry(), cfg)
                .run(stop)
                .await?;
            store.close().await;
            Ok(())
        }
        Command::BackupSelf(a) => selfbackup::backup_self(a).await,
        Command::Doctor => {
            if !doctor::doctor().await? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::RestoreSelf(a) => selfbackup::restore_self(a).await,
        Command::Migrate => {
            let store = config::open_store().await?;
            println!(
                "database is up to date ({})",
                brokeforge_store::redact_url(&config::database_url())
            );
            store.close().await;
            Ok(())
        }
        Command::Bench(args) => bench::run(args).await,
        Command::Admin { command } => admin::run(command).await,
        Command::Login(a) => cli::login::login(a).await,
        Command::Server { command } => cli::server::server(cli.client, command).await,
        Command::Install(a) => cli::package::install(cli.client, a).await,
        Command::Remove(a) => cli::package::remove(cli.client, a).await,
        Command::Plan(a) => cli::package::plan(cli.client, a).await,
        Command::Db { command } => cli::db::db(cli.client, command).await,
        Command::Team { command } => cli::team::team(cli.client, command).await,
        Command::Php { command } => cli::php::php(cli.client, command).await,
        Command::Recipe { command } => cli::recipe::recipe(cli.client, command).await,
        Command::Check(a) => cli::check::check(cli.client, a).await,
        Command::Firewall { command } => cli::firewall::firewall(cli.client, command).await,
        Command::Metrics(a) => cli::monitoring::metrics(cli.client, a).await,
        Command::Channel { command } => cli::monitoring::channel(cli.client, command).await,
        Command::Alert { command } => cli::monitoring::alert(cli.client, command).await,
        Command::Logs(a) => cli::logs::logs(cli.client, a).await,
        Command::Account { command } => cli::account::account(cli.client, command).await,
        Command::Audit(a) => cli::audit::audit(cli.client, a).await,
        Command::Backup { command } => cli::backup::backup(cli.client, command).await,
        Command::Site { command } => cli::site::site(cli.client, command).await,
        Command::Events(a) => cli::jobs::events(cli.client, a).await,
        Command::Jobs { command } => cli::jobs::jobs(cli.client, command).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "brokeforge",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Catalogue { server } => {
            let json = cli.client.json;
            // The catalogue is compiled in; only the server's OS comes from the API.
            let os = match server {
                Some(server) => {
                    let client = client::Client::new(&cli.client)?;
                    let id = client.server_id(&server)?;
                    let detail: brokeforge_web::api::types::ServerDetail =
                        client.get_as(&format!("/servers/{id}"))?;
                    match detail.server.os {
                        Some(os) => Some(os),
                        None => anyhow::bail!(
                            "{server} has not reported its OS yet (it is known once it is provisioned)"
                        ),
                    }
                }
                None => None,
            };
            let entries: Vec<_> = brokeforge_packages::catalogue::catalogue()
                .into_iter()
                .map(|e| {
                    let unavailable = os.as_deref().and_then(e.unavailable);
                    (e, unavailable)
                })
                .collect();
            if json {
                let list: Vec<_> = entries
                    .into_iter()
                    .map(
                        |(package, unavailable)| brokeforge_web::api::types::CatalogueEntry {
                            package,
                            unavailable,
                        },
                    )
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            for (e, unavailable) in entries {
                println!(
                    "{:<12} {:<10} {}",
                    e.name,
                    e.category.as_str(),
                    e.description
                );
                if let Some(why) = unavailable {
                    println!("    unavailable on this server: {why}");
                    continue;
                }
                for p in &e.parameters {
                    let allowed = if p.allowed.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", p.allowed.join("|"))
                    };
                    println!(
                        "    --set {}=<{}>{allowed}  default {}  {}",
                        p.name, p.kind, p.default, p.description
                    );
                }
                let steps: Vec<&str> = e.install_milestones.iter().map(|m| m.label).collect();
                println!("    install: {}", steps.join(" > "));
            }
            Ok(())
        }
    }
}

/// Cancel `stop` on SIGINT or SIGTERM.
pub async fn shutdown_on_signal(stop: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
    stop.cancel();
}
