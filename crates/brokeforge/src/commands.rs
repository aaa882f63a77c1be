//! Client commands: everything the web app does, from a terminal or a script, through the JSON API.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, OutputMode, SavedLogin, follow, job_label, save_login};

/// `key=value`, as `--set` takes it.
fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not key=value"))?;
    if k.is_empty() {
        return Err(format!("`{s}` has no key"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn settings(set: &[(String, String)]) -> Value {
    Value::Object(
        set.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn read_stdin(what: &str) -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .with_context(|| format!("reading {what} from standard input"))?;
    Ok(s)
}

fn password_from_stdin() -> Result<String> {
    let s = read_stdin("the password")?;
    let pw = s.strip_suffix('\n').unwrap_or(&s);
    Ok(pw.strip_suffix('\r').unwrap_or(pw).to_string())
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Print a queued job, or follow it; an error when following ends in anything but success.
async fn job_result(
    client: &Client,
    server_id: i64,
    job: &Value,
    do_follow: bool,
) -> Result<Value> {
    if !do_follow {
        if client.json {
            print_json(&json!({"job": job}));
        } else {
            println!(
                "queued job {} ({}); follow it with `brokeforge jobs show {} --follow`",
                job["id"],
                job_label(job),
                job["id"]
            );
        }
        return Ok(job.clone());
    }
    let f = follow(client, server_id, job, OutputMode::Progress).await?;
    if client.json {
        print_json(&json!({"job": f.job}));
    }
    if !f.ok {
        return Err(JobFailed(f.job["id"].as_i64().unwrap_or_default()).into());
    }
    Ok(f.job)
}

/// A followed job did not succeed (its error was printed already).
#[derive(Debug)]
pub struct JobFailed(pub i64);

impl std::fmt::Display for JobFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job {} did not succeed", self.0)
    }
}

impl std::error::Error for JobFailed {}

/// The command's own exit code (site run).
#[derive(Debug)]
pub struct ExitWith(pub i32);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

// ---- login ----

#[derive(Args)]
pub struct LoginArgs {
    /// The BrokeForge server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub email: String,
    /// Read the password from standard input.
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// Name of the API token this login creates.
    #[arg(long, default_value = "cli")]
    pub name: String,
}

pub async fn login(a: LoginArgs) -> Result<()> {
    let password = password_from_stdin()?;
    let client = Client::new(&ClientArgs {
        url: Some(a.url.clone()),
        ..ClientArgs::default()
    })?;
    let token = client.login(&a.email, &password, &a.name)?;
    let path = save_login(&SavedLogin {
        url: client.base.clone(),
        token,
    })?;
    println!(
        "signed in to {} as {}; token saved in {}",
        client.base,
        a.email,
        path.display()
    );
    Ok(())
}

// ---- servers ----

#[derive(Subcommand)]
pub enum ServerCommand {
    /// Add a server. Without --root-key, prints the one-line script to run as root on it; with --root-key,
    /// BrokeForge connects itself and provisions it (direct onboarding).
    Add {
        #[arg(long)]
        name: String,
        /// Public IP address or hostname.
        #[arg(long)]
        ip: String,
        #[arg(long, default_value_t = 22)]
        port: i64,
        /// A root private key file for direct onboarding.
        #[arg(long)]
        root_key: Option<PathBuf>,
        /// The server's SSH host key fingerprint (SHA256:...), pinned now.
        #[arg(long)]
        host_key_fingerprint: Option<String>,
        /// Without a fingerprint, trust the host key the server shows first (direct onboarding only).
        #[arg(long)]
        trust_on_first_use: bool,
        /// Wait for onboarding and provisioning; exit 0 only if they succeed.
        #[arg(long)]
        follow: bool,
    },
    /// Your servers.
    List,
    /// One server with its services and sites.
    Show { server: String },
    /// A fresh one-line provisioning command (the previous one stops working).
    Script { server: String },
    /// Forget a server (nothing on it changes).
    Remove { server: String },
    /// Pin the server's SSH host key.
    PinHostKey {
        server: String,
        #[arg(long)]
        fingerprint: String,
    },
}

pub async fn server(c: ClientArgs, cmd: ServerCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        ServerCommand::Add {
            name,
            ip,
            port,
            root_key,
            host_key_fingerprint,
            trust_on_first_use,
            follow: do_follow,
        } => {
            let key = match &root_key {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .with_context(|| format!("reading the root key {}", p.display()))?,
                ),
                None => None,
            };
            let made = client.post(
                "/servers",
                json!({"name": name, "public_ip": ip, "ssh_port": port, "host_key_fingerprint": host_key_fingerprint,
                       "root_key": key, "trust_on_first_use": trust_on_first_use}),
            )?;
            let id = made["server"]["id"].as_i64().unwrap_or_default();
            if client.json && !do_follow {
                print_json(&made);
                return Ok(());
            }
            match made.get("job") {
                Some(job) => {
                    if !client.json {
                        println!("added server {name} (id {id}); connecting to it");
                    }
                    if do_follow {
                        let j = job_result(&client, id, job, true).await?;
                        // Onboarding queues base provisioning: follow it too.
                        follow_next(&client, id, &j).await?;
                    } else {
                        job_result(&client, id, job, false).await?;
                    }
                }
                None => {
                    if client.json {
                        print_json(&made);
                    } else {
                        println!(
                            "added server {name} (id {id}). Run this as root on it (valid for an hour, once):\n"
                        );
                        println!("  {}\n", made["script"].as_str().unwrap_or_default());
                    }
                    if do_follow {
                        follow_script(&client, id).await?;
                    }
                }
            }
        }
        ServerCommand::List => {
            let v = client.get("/servers")?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            let list = v["servers"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!(
                    "no servers yet: add one with `brokeforge server add --name NAME --ip IP`"
                );
            }
            println!(
                "{:<6} {:<20} {:<22} {:<12} {:<12} SERVICES",
                "ID", "NAME", "ADDRESS", "STATUS", "OS"
            );
            for s in list {
                let sv = &s["server"];
                let services: Vec<&str> = s["services"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x["service_name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "{:<6} {:<20} {:<22} {:<12} {:<12} {}",
                    sv["id"],
                    sv["name"].as_str().unwrap_or_default(),
                    format!(
                        "{}:{}",
                        sv["public_ip"].as_str().unwrap_or_default(),
                        sv["ssh_port"]
                    ),
                    sv["provision_status"].as_str().unwrap_or_default(),
                    sv["os"].as_str().unwrap_or("-"),
                    services.join(",")
                );
            }
        }
        ServerCommand::Show { server } => {
            let id = client.server_id(&server)?;
            let v = client.get(&format!("/servers/{id}"))?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            let s = &v["server"];
            println!(
                "{} (id {})",
                s["name"].as_str().unwrap_or_default(),
                s["id"]
            );
            println!(
                "  address      {}:{}",
                s["public_ip"].as_str().unwrap_or_default(),
                s["ssh_port"]
            );
            println!(
                "  status       {} / {}",
                s["provision_status"].as_str().unwrap_or_default(),
                s["connection_status"].as_str().unwrap_or_default()
            );
            println!(
                "  os           {}",
                s["os"].as_str().unwrap_or("not detected yet")
            );
            println!(
                "  host key     {}",
                s["host_key_fingerprint"].as_str().unwrap_or("not pinned")
            );
            for svc in v["services"].as_array().into_iter().flatten() {
                println!(
                    "  service      {:<12} {}{}",
                    svc["service_name"].as_str().unwrap_or_default(),
                    svc["status"].as_str().unwrap_or_default(),
                    svc["error"]
                        .as_str()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
            for site in v["sites"].as_array().into_iter().flatten() {
                println!(
                    "  site         {:<30} {}",
                    site["domain"].as_str().unwrap_or_default(),
                    site["status"].as_str().unwrap_or_default()
                );
            }
        }
        ServerCommand::Script { server } => {
            let id = client.server_id(&server)?;
            let v = client.post(&format!("/servers/{id}/script"), json!({}))?;
            if client.json {
                print_json(&v);
            } else {
                println!("{}", v["script"].as_str().unwrap_or_default());
            }
        }
        ServerCommand::Remove { server } => {
            let id = client.server_id(&server)?;
            let v = client.delete(&format!("/servers/{id}"))?;
            if client.json {
                print_json(&v);
            } else {
                println!("forgot server {server}; nothing on it was changed");
            }
        }
        ServerCommand::PinHostKey {
            server,
            fingerprint,
        } => {
            let id = client.server_id(&server)?;
            let v = client.post(
                &format!("/servers/{id}/host-key"),
                json!({"fingerprint": fingerprint}),
            )?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "pinned {}",
                    v["server"]["host_key_fingerprint"]
                        .as_str()
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// Follow onboarding by script: the steps the script reports, then the base provisioning job it starts.
async fn follow_script(client: &Client, server_id: i64) -> Result<()> {
    if !client.json {
        eprintln!(
            "waiting for the script to report (Ctrl-C stops waiting; the script keeps going)"
        );
    }
    let mut rx = client.stream(server_id, "after=0")?;
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopped following; `brokeforge events --server {server_id} --follow` picks up again");
                std::process::exit(130);
            }
        };
        let Some(ev) = ev else {
            bail!("the stream closed: is BrokeForge still running?");
        };
        if ev.event != "milestone" {
            continue;
        }
        let d = &ev.data;
        if let Some(job_id) = d["job_id"].as_i64() {
            // The script finished and base provisioning started as a job: follow it to the end.
            let job = client.get(&format!("/jobs/{job_id}"))?;
            job_result(client, server_id, &job["job"], true).await?;
            return Ok(());
        }
        let (step, total) = (
            d["current_step"].as_u64().unwrap_or(0),
            d["total_steps"].as_u64().unwrap_or(0),
        );
        let label = d["label"].as_str().unwrap_or_default();
        match d["status"].as_str() {
            Some("in_progress") if !client.json => eprintln!("[{step}/{total}] {label}"),
            Some("failed") => bail!(
                "the provisioning script failed at `{label}`: {}",
                d["error"].as_str().unwrap_or("no reason given")
            ),
            _ => {}
        }
    }
}

/// After onboarding, the server's base provisioning runs as its own job: follow the newest unfinished job.
async fn follow_next(client: &Client, server_id: i64, after: &Value) -> Result<()> {
    let after_id = after["id"].as_i64().unwrap_or_default();
    for _ in 0..20 {
        let jobs = client.get(&format!("/servers/{server_id}/jobs"))?;
        let next = jobs["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["id"].as_i64().unwrap_or_default() > after_id)
            .min_by_key(|j| j["id"].as_i64().unwrap_or_default())
            .cloned();
        if let Some(j) = next {
            let done = job_result(client, server_id, &j, true).await?;
            return Box::pin(follow_next(client, server_id, &done)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if after["kind"] != "server_access_installer"
            && after["kind"] != "connection_check_installer"
        {
            return Ok(());
        }
    }
    Ok(())
}

// ---- packages ----

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
        json!({"package": a.package, "settings": settings(&a.set)}),
    )?;
    job_result(&client, id, &v["job"], a.follow).await?;
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
    job_result(&client, id, &v["job"], a.follow).await?;
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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

// ---- databases ----

#[derive(Subcommand)]
pub enum DbCommand {
    /// Database schemas.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Database users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
pub enum SchemaCommand {
    /// Create a schema.
    Create(DbTarget),
    /// Drop a schema.
    Drop(DbTarget),
}

#[derive(Args)]
pub struct DbTarget {
    #[arg(long)]
    pub server: String,
    /// mariadb, mysql or postgresql.
    #[arg(long)]
    pub engine: String,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub follow: bool,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create or update a user; the password is read from standard input.
    Create {
        #[command(flatten)]
        target: DbTarget,
        /// A schema the user may use (repeatable).
        #[arg(long = "schema")]
        schemas: Vec<String>,
        /// Create the schemas first.
        #[arg(long)]
        create_schema: bool,
        #[arg(long, default_value = "read-write", value_parser = ["all", "read-write", "read-only"])]
        privileges: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Drop a user.
    Drop(DbTarget),
}

pub async fn db(c: ClientArgs, cmd: DbCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        DbCommand::Schema { command } => match command {
            SchemaCommand::Create(t) => {
                let id = client.server_id(&t.server)?;
                let v = client.post(
                    &format!("/servers/{id}/databases/schemas"),
                    json!({"engine": t.engine, "name": t.name}),
                )?;
                job_result(&client, id, &v["job"], t.follow).await?;
            }
            SchemaCommand::Drop(t) => {
                let id = client.server_id(&t.server)?;
                let v = client.delete(&format!(
                    "/servers/{id}/databases/schemas/{}/{}",
                    urlencode(&t.engine),
                    urlencode(&t.name)
                ))?;
                job_result(&client, id, &v["job"], t.follow).await?;
            }
        },
        DbCommand::User { command } => match command {
            UserCommand::Create {
                target: t,
                schemas,
                create_schema,
                privileges,
                ..
            } => {
                let password = password_from_stdin()?;
                let id = client.server_id(&t.server)?;
                if create_schema {
                    for s in &schemas {
                        let v = client.post(
                            &format!("/servers/{id}/databases/schemas"),
                            json!({"engine": t.engine, "name": s}),
                        )?;
                        // Jobs of a server run in order; with --follow each is waited for.
                        job_result(&client, id, &v["job"], t.follow).await?;
                    }
                }
                let v = client.post(
                    &format!("/servers/{id}/databases/users"),
                    json!({"engine": t.engine, "name": t.name, "schemas": schemas, "privileges": privileges, "password": password}),
                )?;
                job_result(&client, id, &v["job"], t.follow).await?;
            }
            UserCommand::Drop(t) => {
                let id = client.server_id(&t.server)?;
                let v = client.delete(&format!(
                    "/servers/{id}/databases/users/{}/{}",
                    urlencode(&t.engine),
                    urlencode(&t.name)
                ))?;
                job_result(&client, id, &v["job"], t.follow).await?;
            }
        },
    }
    Ok(())
}

// ---- sites ----

#[derive(Args, Clone)]
pub struct SiteTarget {
    #[arg(long)]
    pub server: String,
    #[arg(long)]
    pub domain: String,
}

#[derive(Subcommand)]
pub enum SiteCommand {
    /// Create a site (nginx vhost, releases/shared/current); with --repository, connect it and deploy.
    Create {
        #[command(flatten)]
        target: SiteTarget,
        /// Another name the site answers to (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// PHP version (default: the server's command-line PHP).
        #[arg(long)]
        php: Option<String>,
        /// Served directory inside a release.
        #[arg(long, default_value = "public")]
        web_dir: String,
        /// Make it the server's default site.
        #[arg(long)]
        default: bool,
        /// Git repository (ssh or https); add the site's deploy key to the git host first.
        #[arg(long, requires = "branch")]
        repository: Option<String>,
        #[arg(long)]
        branch: Option<String>,
        /// The git server's host key fingerprint (SHA256:...), checked when the repository connects.
        #[arg(long)]
        git_host_key_fingerprint: Option<String>,
        #[arg(long)]
        follow: bool,
    },
    /// Sites of a server.
    List {
        #[arg(long)]
        server: String,
    },
    /// One site.
    Show(SiteTarget),
    /// Remove a site (its vhost and files unless --keep-files).
    Remove {
        #[command(flatten)]
        target: SiteTarget,
        #[arg(long)]
        keep_files: bool,
        #[arg(long)]
        follow: bool,
    },
    /// Deploy the site's repository.
    Deploy {
        #[command(flatten)]
        target: SiteTarget,
        /// Another branch than the configured one.
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        follow: bool,
    },
    /// Make a kept release live again (default: the one before the live one).
    Rollback {
        #[command(flatten)]
        target: SiteTarget,
        #[arg(long)]
        release: Option<String>,
        #[arg(long)]
        follow: bool,
    },
    /// Connect a git repository (add the deploy key to the git host first), then deploy.
    Repository {
        #[command(flatten)]
        target: SiteTarget,
        /// ssh (git@host:owner/repo.git) or https URL.
        #[arg(long)]
        repository: String,
        #[arg(long, default_value = "main")]
        branch: String,
        /// The git server's host key fingerprint (SHA256:...), checked before anything is cloned.
        #[arg(long)]
        host_key_fingerprint: Option<String>,
        /// Connect only; do not deploy.
        #[arg(long)]
        no_deploy: bool,
        #[arg(long)]
        follow: bool,
    },
    /// HTTPS: get a certificate (Let's Encrypt unless --acme-directory says otherwise) and serve the site over
    /// HTTPS with plain HTTP redirected; again to renew early or add new aliases; --remove to go back to HTTP.
    Certificate {
        #[command(flatten)]
        target: SiteTarget,
        /// Where the certificate authority sends expiry notices.
        #[arg(long)]
        email: Option<String>,
        /// Another ACME directory URL (e.g. Let's Encrypt's staging directory, or a private ACME server).
        #[arg(long)]
        acme_directory: Option<String>,
        /// PEM file with the CA certificate of a private ACME server.
        #[arg(long)]
        acme_ca: Option<PathBuf>,
        /// Send Strict-Transport-Security (browsers then insist on HTTPS for a year).
        #[arg(long)]
        hsts: bool,
        /// Remove the certificate and serve plain HTTP.
        #[arg(long, conflicts_with_all = ["email", "acme_directory", "acme_ca", "hsts"])]
        remove: bool,
        #[arg(long)]
        follow: bool,
    },
    /// Scheduled commands and daemons, run as the app user in the live release. Without --schedule, --daemon
    /// or --clear: print them. Otherwise the given set replaces the current one and is applied.
    Tasks {
        #[command(flatten)]
        target: SiteTarget,
        /// A crontab line: `--schedule '* * * * * php artisan schedule:run'` (repeatable).
        #[arg(long = "schedule")]
        schedules: Vec<String>,
        /// A daemon kept running, with an optional process count: `--daemon '2: php artisan queue:work'`
        /// (repeatable).
        #[arg(long = "daemon")]
        daemons: Vec<String>,
        /// Remove every scheduled command and daemon of the site.
        #[arg(long, conflicts_with_all = ["schedules", "daemons"])]
        clear: bool,
        /// Print the newest lines they wrote (from the server's journal).
        #[arg(long, conflicts_with_all = ["schedules", "daemons", "clear"])]
        output: bool,
        /// With --output: how many lines.
        #[arg(long, default_value_t = 200, requires = "output")]
        lines: u32,
        #[arg(long)]
        follow: bool,
    },
    /// Deployments, kept releases and the live one.
    Deployments(SiteTarget),
    /// Replace the deploy script from a file.
    DeployScript {
        #[command(flatten)]
        target: SiteTarget,
        #[arg(long)]
        file: PathBuf,
    },
    /// Deployment settings: releases kept, deploy timeout, shared paths.
    Settings {
        #[command(flatten)]
        target: SiteTarget,
        /// Releases kept on the server (1-50).
        #[arg(long)]
        keep_releases: Option<u32>,
        /// Seconds the deploy script may run.
        #[arg(long)]
        deploy_timeout: Option<u64>,
        /// A file or directory (ending in /) shared by every release; repeat for several (replaces the list).
        #[arg(long = "shared")]
        shared: Vec<String>,
    },
    /// The site's deploy key (add it to your git host).
    DeployKey(SiteTarget),
    /// The deploy webhook URL and secret.
    Webhook(SiteTarget),
    /// Read or replace the site's .env.
    Env {
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// Run a command in the live release as the app user; its output streams here and its exit code becomes
    /// this command's: `brokeforge site run --server S --domain D -- php artisan migrate --force`
    Run {
        #[command(flatten)]
        target: SiteTarget,
        /// Seconds before the command is stopped.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum EnvCommand {
    /// Print the .env.
    Get(SiteTarget),
    /// Replace the .env with a file's contents, or standard input.
    Set {
        #[command(flatten)]
        target: SiteTarget,
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// Lines indented for a listing; `  (none)` when there are none.
fn indent(lines: &str) -> String {
    if lines.trim().is_empty() {
        return "  (none)".into();
    }
    lines
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn site_id(client: &Client, t: &SiteTarget) -> Result<(i64, i64)> {
    let server = client.server_id(&t.server)?;
    let site = client.site(server, &t.domain)?;
    Ok((server, site["id"].as_i64().unwrap_or_default()))
}

pub async fn site(c: ClientArgs, cmd: SiteCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        SiteCommand::Create {
            target,
            aliases,
            php,
            web_dir,
            default,
            repository,
            branch,
            git_host_key_fingerprint,
            follow: do_follow,
        } => {
            let server = client.server_id(&target.server)?;
            let v = client.post(
                &format!("/servers/{server}/sites"),
                json!({"domain": target.domain, "aliases": aliases, "php_version": php, "web_directory": web_dir, "default_site": default}),
            )?;
            let site_id = v["site"]["id"].as_i64().unwrap_or_default();
            let Some(repo) = repository else {
                job_result(&client, server, &v["job"], do_follow).await?;
                return Ok(());
            };
            // The repository connects once the site exists.
            job_result(&client, server, &v["job"], true).await?;
            let key = client.get(&format!("/sites/{site_id}/deploy-key"))?;
            if !client.json {
                eprintln!(
                    "deploy key (add it to the git host as a read-only key):\n  {}",
                    key["public_key"].as_str().unwrap_or_default()
                );
            }
            let r = client.post(
                &format!("/sites/{site_id}/repository"),
                json!({"url": repo, "branch": branch, "host_key_fingerprint": git_host_key_fingerprint, "deploy": true}),
            )?;
            let done = job_result(&client, server, &r["job"], do_follow).await?;
            if do_follow && let Some(dj) = done["result"]["deployment_job_id"].as_i64() {
                let job = client.get(&format!("/jobs/{dj}"))?;
                job_result(&client, server, &job["job"], true).await?;
            }
        }
        SiteCommand::List { server } => {
            let id = client.server_id(&server)?;
            let v = client.get(&format!("/servers/{id}/sites"))?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            for s in v["sites"].as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<36} PHP {:<5} {}",
                    s["id"],
                    s["domain"].as_str().unwrap_or_default(),
                    s["php_version"].as_str().unwrap_or("-"),
                    s["status"].as_str().unwrap_or_default()
                );
            }
        }
        SiteCommand::Show(t) => {
            let (_, id) = site_id(&client, &t)?;
            let v = client.get(&format!("/sites/{id}"))?;
            if client.json {
                print_json(&v);
            } else {
                let s = &v["site"];
                let cfg = &s["configuration"];
                println!(
                    "{} (id {}) {}",
                    s["domain"].as_str().unwrap_or_default(),
                    s["id"],
                    s["status"].as_str().unwrap_or_default()
                );
                println!(
                    "  php          {}",
                    s["php_version"].as_str().unwrap_or("-")
                );
                println!(
                    "  root         {}",
                    s["document_root"].as_str().unwrap_or_default()
                );
                println!(
                    "  repository   {}",
                    cfg["repository"]["url"].as_str().unwrap_or("none")
                );
                println!(
                    "  live release {}",
                    cfg["current_release"].as_str().unwrap_or("none yet")
                );
                let cert = &cfg["certificate"];
                if cert.is_object() {
                    println!(
                        "  https        {} (expires {})",
                        cert["domains"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|d| d.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        cert["expires"].as_str().unwrap_or("unknown")
                    );
                } else {
                    println!("  https        none (plain HTTP)");
                }
            }
        }
        SiteCommand::Remove {
            target,
            keep_files,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let v = client.delete(&format!("/sites/{id}?keep_files={keep_files}"))?;
            job_result(&client, server, &v["job"], do_follow).await?;
        }
        SiteCommand::Deploy {
            target,
            branch,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let v = client.post(
                &format!("/sites/{id}/deployments"),
                json!({"branch": branch}),
            )?;
            if !client.json {
                eprintln!("deployment {} queued", v["deployment"]["id"]);
            }
            job_result(&client, server, &v["job"], do_follow).await?;
        }
        SiteCommand::Rollback {
            target,
            release,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let release = match release {
                Some(r) => r,
                None => {
                    let d = client.get(&format!("/sites/{id}/deployments"))?;
                    let current = d["current_release"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let kept: Vec<String> = d["releases"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r["name"].as_str().map(str::to_string))
                        .collect();
                    let pos = kept.iter().position(|r| *r == current);
                    match pos {
                        Some(p) if p > 0 => kept[p - 1].clone(),
                        _ => bail!(
                            "there is no kept release before the live one ({current}); name one with --release"
                        ),
                    }
                }
            };
            let v = client.post(
                &format!("/sites/{id}/rollback"),
                json!({"release": release}),
            )?;
            if !client.json {
                eprintln!("rolling back to {release}");
            }
            job_result(&client, server, &v["job"], do_follow).await?;
        }
        SiteCommand::Tasks {
            target,
            schedules,
            daemons,
            clear,
            output,
            lines,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            if output {
                let v = client.get(&format!("/sites/{id}/tasks/output?lines={lines}"))?;
                if client.json {
                    print_json(&v);
                } else {
                    print!("{}", v["output"].as_str().unwrap_or_default());
                }
                return Ok(());
            }
            if schedules.is_empty() && daemons.is_empty() && !clear {
                let s = client.get(&format!("/sites/{id}"))?;
                let tasks = &s["site"]["configuration"]["tasks"];
                if client.json {
                    print_json(tasks);
                } else {
                    let parsed: brokeforge_packages::services::sites::schedule::SiteTasks =
                        serde_json::from_value(tasks.clone()).unwrap_or_default();
                    let (sched, daem) = parsed.to_text();
                    println!("scheduled commands:\n{}", indent(&sched));
                    println!("daemons:\n{}", indent(&daem));
                }
                return Ok(());
            }
            // Parsed here too, so a mistake is reported before anything is sent.
            let tasks = brokeforge_packages::services::sites::schedule::SiteTasks::parse(
                &schedules.join("\n"),
                &daemons.join("\n"),
            )
            .map_err(|e| anyhow!("{}: {}", e.field, e.message))?;
            let v = client.put(&format!("/sites/{id}/tasks"), serde_json::to_value(&tasks)?)?;
            job_result(&client, server, &v["job"], do_follow).await?;
        }
        SiteCommand::Certificate {
            target,
            email,
            acme_directory,
            acme_ca,
            hsts,
            remove,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let v = if remove {
                client.delete(&format!("/sites/{id}/certificate"))?
            } else {
                let ca = match acme_ca {
                    Some(path) => Some(
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?,
                    ),
                    None => None,
                };
                client.post(
                    &format!("/sites/{id}/certificate"),
                    json!({"email": email, "acme_directory": acme_directory, "acme_ca_certificate": ca, "hsts": hsts}),
                )?
            };
            job_result(&client, server, &v["job"], do_follow).await?;
        }
        SiteCommand::Repository {
            target,
            repository: url,
            branch,
            host_key_fingerprint,
            no_deploy,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let r = client.post(
                &format!("/sites/{id}/repository"),
                json!({"url": url, "branch": branch, "host_key_fingerprint": host_key_fingerprint, "deploy": !no_deploy}),
            )?;
            let done = job_result(&client, server, &r["job"], do_follow).await?;
            if !client.json && do_follow {
                let fps: Vec<&str> = done["result"]["host_key_fingerprints"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                if !fps.is_empty() {
                    eprintln!("git server host key pinned: {}", fps.join(", "));
                }
            }
            if do_follow && let Some(dj) = done["result"]["deployment_job_id"].as_i64() {
                let job = client.get(&format!("/jobs/{dj}"))?;
                job_result(&client, server, &job["job"], true).await?;
            }
        }
        SiteCommand::Deployments(t) => {
            let (_, id) = site_id(&client, &t)?;
            let v = client.get(&format!("/sites/{id}/deployments"))?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            println!(
                "live release: {}",
                v["current_release"].as_str().unwrap_or("none")
            );
            for d in v["deployments"].as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<9} {:<10} {:<12} {:<24} {}",
                    d["id"],
                    d["kind"].as_str().unwrap_or_default(),
                    d["status"].as_str().unwrap_or_default(),
                    d["commit_hash"]
                        .as_str()
                        .map(|c| &c[..c.len().min(10)])
                        .unwrap_or("-"),
                    d["release"].as_str().unwrap_or("-"),
                    d["triggered_by"].as_str().unwrap_or_default()
                );
            }
        }
        SiteCommand::DeployScript { target, file } => {
            let (_, id) = site_id(&client, &target)?;
            let script = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            client.put(
                &format!("/sites/{id}/deploy-script"),
                json!({"script": script}),
            )?;
            if !client.json {
                println!("deploy script saved");
            }
        }
        SiteCommand::Settings {
            target,
            keep_releases,
            deploy_timeout,
            shared,
        } => {
            let (_, id) = site_id(&client, &target)?;
            let body = json!({
                "keep_releases": keep_releases,
                "deploy_timeout_secs": deploy_timeout,
                "shared_paths": if shared.is_empty() { Value::Null } else { json!(shared) },
            });
            let v = client.put(&format!("/sites/{id}/settings"), body)?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "keep {} releases; deploy timeout {} s; shared: {}",
                    v["keep_releases"],
                    v["deploy_timeout_secs"],
                    v["shared_paths"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                );
            }
        }
        SiteCommand::DeployKey(t) => {
            let (_, id) = site_id(&client, &t)?;
            let v = client.get(&format!("/sites/{id}/deploy-key"))?;
            if client.json {
                print_json(&v);
            } else {
                println!("{}", v["public_key"].as_str().unwrap_or_default());
            }
        }
        SiteCommand::Webhook(t) => {
            let (_, id) = site_id(&client, &t)?;
            let v = client.get(&format!("/sites/{id}/webhook"))?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "url:    {}\nsecret: {}",
                    v["url"].as_str().unwrap_or_default(),
                    v["secret"].as_str().unwrap_or_default()
                );
            }
        }
        SiteCommand::Env { command } => match command {
            EnvCommand::Get(t) => {
                let (_, id) = site_id(&client, &t)?;
                let v = client.get(&format!("/sites/{id}/env"))?;
                if client.json {
                    print_json(&v);
                } else {
                    print!("{}", v["env"].as_str().unwrap_or_default());
                }
            }
            EnvCommand::Set { target, file } => {
                let (_, id) = site_id(&client, &target)?;
                let env = match file {
                    Some(f) => std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?,
                    None => read_stdin("the .env")?,
                };
                client.put(&format!("/sites/{id}/env"), json!({"env": env}))?;
                if !client.json {
                    println!(".env replaced");
                }
            }
        },
        SiteCommand::Run {
            target,
            timeout,
            command,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let v = client.post(
                &format!("/sites/{id}/commands"),
                json!({"command": command.join(" "), "timeout_secs": timeout}),
            )?;
            let f = follow(&client, server, &v["job"], OutputMode::Passthrough).await?;
            let result = &f.job["result"];
            if client.json {
                print_json(&json!({"job": f.job}));
            }
            if result.is_null() {
                bail!(
                    "the command did not run: {}",
                    f.job["error"].as_str().unwrap_or("no reason given")
                );
            }
            if result["timed_out"] == true {
                eprintln!("the command was stopped after {timeout} s");
                return Err(ExitWith(124).into());
            }
            let code = result["exit_code"].as_i64().unwrap_or(1) as i32;
            if code != 0 {
                return Err(ExitWith(code).into());
            }
        }
    }
    Ok(())
}

// ---- events and jobs ----

#[derive(Args)]
pub struct EventsArgs {
    #[arg(long)]
    pub server: String,
    /// Keep printing new events as they happen (Ctrl-C stops).
    #[arg(long)]
    pub follow: bool,
}

pub async fn events(c: ClientArgs, a: EventsArgs) -> Result<()> {
    let client = Client::new(&c)?;
    let id = client.server_id(&a.server)?;
    let v = client.get(&format!("/servers/{id}/events"))?;
    let print = |e: &Value| {
        if client.json {
            println!("{}", e);
        } else {
            println!(
                "{:<8} {:<10} {:<9} [{}/{}] {:<40} {}{}",
                e["job_id"]
                    .as_i64()
                    .map(|j| j.to_string())
                    .unwrap_or_default(),
                e["service_type"].as_str().unwrap_or_default(),
                e["provision_type"].as_str().unwrap_or_default(),
                e["current_step"],
                e["total_steps"],
                e["label"].as_str().unwrap_or_default(),
                e["status"].as_str().unwrap_or_default(),
                e["error"]
                    .as_str()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            );
        }
    };
    for e in v["events"].as_array().into_iter().flatten() {
        print(e);
    }
    if !a.follow {
        return Ok(());
    }
    let mut rx = client.stream(id, "")?;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) if ev.event == "milestone" => print(&ev.data),
                Some(_) => {}
                None => bail!("the stream closed: is BrokeForge still running?"),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Recent jobs of a server.
    List {
        #[arg(long)]
        server: String,
    },
    /// One job (with --follow: wait for it).
    Show {
        id: i64,
        #[arg(long)]
        follow: bool,
    },
    /// Cancel a queued or running job.
    Cancel { id: i64 },
    /// Run a failed or cancelled job again (a new job).
    Retry {
        id: i64,
        #[arg(long)]
        follow: bool,
    },
}

pub async fn jobs(c: ClientArgs, cmd: JobsCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        JobsCommand::List { server } => {
            let id = client.server_id(&server)?;
            let v = client.get(&format!("/servers/{id}/jobs"))?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            for j in v["jobs"].as_array().into_iter().flatten() {
                println!(
                    "{:<8} {:<28} {:<10} {}",
                    j["id"],
                    job_label(j),
                    j["status"].as_str().unwrap_or_default(),
                    j["error"].as_str().unwrap_or_default()
                );
            }
        }
        JobsCommand::Show {
            id,
            follow: do_follow,
        } => {
            let v = client.get(&format!("/jobs/{id}"))?;
            let job = &v["job"];
            if do_follow
                && !matches!(
                    job["status"].as_str(),
                    Some("done" | "failed" | "cancelled")
                )
            {
                let server = job["server_id"]
                    .as_i64()
                    .ok_or_else(|| anyhow!("the job has no server"))?;
                job_result(&client, server, job, true).await?;
                return Ok(());
            }
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "job {} {}: {}{}",
                    job["id"],
                    job_label(job),
                    job["status"].as_str().unwrap_or_default(),
                    job["error"]
                        .as_str()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
            if job["status"] == "failed" || job["status"] == "cancelled" {
                return Err(JobFailed(id).into());
            }
        }
        JobsCommand::Cancel { id } => {
            let v = client.post(&format!("/jobs/{id}/cancel"), json!({}))?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "job {id}: {}",
                    v["job"]["status"].as_str().unwrap_or("cancel requested")
                );
            }
        }
        JobsCommand::Retry {
            id,
            follow: do_follow,
        } => {
            let v = client.post(&format!("/jobs/{id}/retry"), json!({}))?;
            let server = v["job"]["server_id"].as_i64().unwrap_or_default();
            job_result(&client, server, &v["job"], do_follow).await?;
        }
    }
    Ok(())
}
