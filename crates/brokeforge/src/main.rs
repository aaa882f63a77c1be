//! The `brokeforge` binary.

mod config;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// BrokeForge turns fresh Linux servers into hosts for PHP sites, over SSH.
///
/// Data lives in BROKEFORGE_DATA_DIR (default ~/.local/share/brokeforge): the SQLite database
/// `brokeforge.db` and the master key `master.key` that encrypts every stored secret. Set
/// BROKEFORGE_DATABASE_URL=postgres://... to use PostgreSQL, BROKEFORGE_MASTER_KEY to supply the key.
#[derive(Parser)]
#[command(name = "brokeforge", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web app and API (migrates the database first).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "BROKEFORGE_BIND")]
        bind: String,
    },
    /// Apply database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BROKEFORGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { bind } => serve::serve(&bind).await,
        Command::Migrate => {
            let store = config::open_store().await?;
            println!(
                "database is up to date ({})",
                brokeforge_store::redact_url(&config::database_url())
            );
            store.close().await;
            Ok(())
        }
    }
}
