//! `brokeforge backup`: storages, plans, runs, snapshots, restores, drills and recovery kits.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::common::*;
use crate::client::{Client, ClientArgs};
use brokeforge_domain::backups::{PlanRequest, StorageRequest};
use brokeforge_packages::services::backup::repository::Retention;
use brokeforge_web::api::types::RestoreBody;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Where backups go: S3-compatible storage, SFTP, or a directory on a server.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// What a server backs up, where, when and for how long.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Back up now.
    Run(PlanTarget),
    /// A plan's snapshots, newest first.
    Snapshots(PlanTarget),
    /// Restore a snapshot: into a new schema (--into), or over the plan's own (needs --yes).
    Restore {
        #[command(flatten)]
        target: PlanTarget,
        #[arg(long)]
        snapshot: String,
        /// A new schema to restore into (it must not exist).
        #[arg(long)]
        into: Option<String>,
        /// Overwrite the plan's schema without asking.
        #[arg(long)]
        yes: bool,
    },
    /// A restore drill now: restore the newest snapshot into a scratch schema and count its rows.
    Verify(PlanTarget),
    /// Download a snapshot (a dump, an RDB file or a tar of a site's files), streamed from the server.
    Download {
        #[arg(long)]
        server: String,
        #[arg(long)]
        plan: String,
        #[arg(long)]
        snapshot: String,
        /// Where to write it; `-` for standard output.
        #[arg(long)]
        output: String,
    },
    /// Print the repository and its password, to restore without BrokeForge. Keep it offline.
    RecoveryKit(PlanTarget),
}

#[derive(Args)]
pub struct PlanTarget {
    #[arg(long)]
    pub server: String,
    #[arg(long)]
    pub plan: String,
    /// Wait for the job, with its progress.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Subcommand)]
pub enum StorageCommand {
    /// Define a storage.
    Add(Box<StorageAdd>),
    /// Test a storage from a server: write, read back and delete a small object.
    Check {
        #[arg(long)]
        name: String,
        #[arg(long)]
        server: String,
        #[arg(long)]
        follow: bool,
    },
    /// List your storages.
    List,
    /// Delete a storage no plan uses.
    Remove {
        #[arg(long)]
        name: String,
    },
}

#[derive(Args)]
pub struct StorageAdd {
    #[arg(long)]
    pub name: String,
    #[arg(long, value_parser = ["s3", "sftp", "local"])]
    pub kind: String,
    /// S3: https://host[:port].
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub bucket: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// S3: address the bucket in the path (MinIO and most self-hosted servers).
    #[arg(long)]
    pub path_style: bool,
    #[arg(long)]
    pub access_key_id: Option<String>,
    /// S3: read the secret access key from standard input.
    #[arg(long)]
    pub secret_stdin: bool,
    /// SFTP: the server.
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long)]
    pub user: Option<String>,
    /// SFTP: the host key fingerprint to expect (SHA256:...); without it the first key seen is pinned.
    #[arg(long)]
    pub host_key_fingerprint: Option<String>,
    /// local: the server whose directory it is.
    #[arg(long)]
    pub server: Option<String>,
    /// local and SFTP: the directory.
    #[arg(long)]
    pub path: Option<String>,
}

#[derive(Subcommand)]
pub enum PlanCommand {
    /// Create a plan.
    Create {
        #[arg(long)]
        server: String,
        #[arg(long)]
        name: String,
        /// ENGINE:SCHEMA, e.g. mariadb:shop; or `redis` for the server's Redis data.
        #[arg(long, required_unless_present = "site", conflicts_with = "site")]
        database: Option<String>,
        /// A site's domain: its shared/ files and .env.
        #[arg(long)]
        site: Option<String>,
        /// The storage's name.
        #[arg(long)]
        storage: String,
        /// Cron in UTC (five fields, or @daily ...); without it the plan runs when asked.
        #[arg(long)]
        schedule: Option<String>,
        /// When to run a restore drill (cron in UTC).
        #[arg(long)]
        verify_schedule: Option<String>,
        #[arg(long, default_value_t = 7)]
        keep_last: u32,
        #[arg(long, default_value_t = 0)]
        keep_daily: u32,
        #[arg(long, default_value_t = 0)]
        keep_weekly: u32,
        #[arg(long, default_value_t = 0)]
        keep_monthly: u32,
    },
    /// A server's plans.
    List {
        #[arg(long)]
        server: String,
    },
    /// One plan with its last restore drill.
    Show {
        #[arg(long)]
        server: String,
        #[arg(long)]
        plan: String,
    },
    /// Delete a plan (its snapshots stay on the storage).
    Remove {
        #[arg(long)]
        server: String,
        #[arg(long)]
        plan: String,
    },
}

fn plan_path(client: &Client, server: &str, plan: &str) -> Result<(i64, String)> {
    let id = client.server_id(server)?;
    Ok((id, format!("/servers/{id}/backups/{}", urlencode(plan))))
}

fn size(bytes: &Value) -> String {
    match bytes.as_i64() {
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        Some(b) if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
        None => "-".into(),
    }
}

pub async fn backup(c: ClientArgs, cmd: BackupCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        BackupCommand::Storage { command } => storage(&client, command).await?,
        BackupCommand::Plan { command } => plan(&client, command)?,
        BackupCommand::Run(t) => {
            let (id, path) = plan_path(&client, &t.server, &t.plan)?;
            let v = client.post_empty(&format!("{path}/run"))?;
            job_result(&client, id, &job_of(&v)?, t.follow).await?;
        }
        BackupCommand::Snapshots(t) => {
            let (_, path) = plan_path(&client, &t.server, &t.plan)?;
            let v = client.get(&format!("{path}/snapshots"))?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "{:<10} {:<20} {:>12} {:>9}",
                    "ID", "TAKEN (UTC)", "SIZE", "SECONDS"
                );
                for s in v["snapshots"].as_array().into_iter().flatten() {
                    let id = s["snapshot_id"].as_str().unwrap_or_default();
                    println!(
                        "{:<10} {:<20} {:>12} {:>9}",
                        &id[..id.len().min(8)],
                        brokeforge_core::time::utc_stamp(
                            brokeforge_core::time::from_json(&s["taken_at"]).unwrap_or_default()
                        ),
                        size(&s["size_bytes"]),
                        s["duration_ms"]
                            .as_i64()
                            .map(|d| format!("{:.1}", d as f64 / 1000.0))
                            .unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        BackupCommand::Restore {
            target: t,
            snapshot,
            into,
            yes,
        } => {
            let (id, path) = plan_path(&client, &t.server, &t.plan)?;
            let mut body = RestoreBody {
                snapshot,
                into: None,
                confirm: None,
            };
            match into {
                Some(into) => body.into = Some(into),
                None => {
                    let plan = client.get(&path)?;
                    let source = &plan["plan"]["source"];
                    let (what, schema) = match source["domain"].as_str() {
                        Some(domain) => (format!("the shared/ files of site {domain}"), domain),
                        None => {
                            let schema = source["schema"].as_str().unwrap_or_default();
                            (format!("the tables of schema {schema}"), schema)
                        }
                    };
                    let schema = schema.to_string();
                    if !yes {
                        bail!(
                            "this overwrites {what} on {} with the snapshot's: add --yes to go on, or --into NEW_NAME",
                            t.server
                        );
                    }
                    body.confirm = Some(schema.to_string());
                }
            }
            let v = client.post(&format!("{path}/restore"), body)?;
            job_result(&client, id, &job_of(&v)?, t.follow).await?;
        }
        BackupCommand::Verify(t) => {
            let (id, path) = plan_path(&client, &t.server, &t.plan)?;
            let v = client.post_empty(&format!("{path}/verify"))?;
            let job = job_result(&client, id, &job_of(&v)?, t.follow).await?;
            if t.follow && !client.json {
                let result = job.result.unwrap_or_default();
                for table in result["tables"].as_array().into_iter().flatten() {
                    println!(
                        "{}\t{} rows",
                        table["table"].as_str().unwrap_or_default(),
                        table["rows"]
                    );
                }
            }
        }
        BackupCommand::Download {
            server,
            plan,
            snapshot,
            output,
        } => {
            let (_, path) = plan_path(&client, &server, &plan)?;
            let url = format!("{path}/snapshots/{}/download", urlencode(&snapshot));
            if output == "-" {
                client.download(&url, &mut std::io::stdout().lock())?;
            } else {
                // Written beside the target and renamed when whole: a cut download never looks complete.
                let tmp = format!("{output}.part");
                let mut file = std::fs::File::create(&tmp)?;
                let n = client.download(&url, &mut file)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &output)?;
                eprintln!("{n} bytes written to {output}");
            }
        }
        BackupCommand::RecoveryKit(t) => {
            let (_, path) = plan_path(&client, &t.server, &t.plan)?;
            print!("{}", client.get_text(&format!("{path}/recovery-kit"))?);
        }
    }
    Ok(())
}

async fn storage(client: &Client, cmd: StorageCommand) -> Result<()> {
    match cmd {
        StorageCommand::Check {
            name,
            server,
            follow,
        } => {
            let id = client.server_id(&server)?;
            let v = client.post_empty(&format!(
                "/servers/{id}/backup-storages/{}/check",
                urlencode(&name)
            ))?;
            job_result(client, id, &job_of(&v)?, follow).await?;
        }
        StorageCommand::Add(a) => {
            let StorageAdd {
                name,
                kind,
                endpoint,
                bucket,
                region,
                path_style,
                access_key_id,
                secret_stdin,
                host,
                port,
                user,
                host_key_fingerprint,
                server,
                path,
            } = *a;
            if kind == "s3" && !secret_stdin {
                bail!(
                    "give the S3 secret access key on standard input with --secret-stdin (never on the command line)"
                );
            }
            let body = StorageRequest {
                secret_access_key: if kind == "s3" {
                    Some(password_from_stdin()?)
                } else {
                    None
                },
                name,
                kind,
                endpoint: endpoint.unwrap_or_default(),
                bucket: bucket.unwrap_or_default(),
                region,
                path_style,
                access_key_id: access_key_id.unwrap_or_default(),
                host: host.unwrap_or_default(),
                port,
                user: user.unwrap_or_default(),
                host_key_fingerprint,
                server_id: match server {
                    Some(s) => Some(client.server_id(&s)?),
                    None => None,
                },
                path: path.unwrap_or_default(),
            };
            let v = client.post("/backup-storages", body)?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "storage {} added",
                    v["storage"]["name"].as_str().unwrap_or_default()
                );
                if let Some(k) = v["storage"]["configuration"]["public_key"].as_str() {
                    println!("Authorize this key for the SFTP user (its authorized_keys):\n{k}");
                }
            }
        }
        StorageCommand::List => {
            let v = client.get("/backup-storages")?;
            if client.json {
                print_json(&v);
            } else {
                for s in v["storages"].as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\t{}",
                        s["name"].as_str().unwrap_or_default(),
                        s["kind"].as_str().unwrap_or_default(),
                        s["configuration"]
                    );
                }
            }
        }
        StorageCommand::Remove { name } => {
            client.delete(&format!("/backup-storages/{}", urlencode(&name)))?;
            println!("storage {name} deleted");
        }
    }
    Ok(())
}

fn plan(client: &Client, cmd: PlanCommand) -> Result<()> {
    match cmd {
        PlanCommand::Create {
            server,
            name,
            database,
            site,
            storage,
            schedule,
            verify_schedule,
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
        } => {
            let id = client.server_id(&server)?;
            let v = client.post(
                &format!("/servers/{id}/backups"),
                PlanRequest {
                    name: name.clone(),
                    database: database.unwrap_or_default(),
                    site: site.unwrap_or_default(),
                    storage,
                    schedule,
                    verify_schedule,
                    retention: Some(Retention {
                        keep_last,
                        keep_daily,
                        keep_weekly,
                        keep_monthly,
                    }),
                },
            )?;
            if client.json {
                print_json(&v);
            } else {
                println!("plan {name} created on {server}");
            }
        }
        PlanCommand::List { server } => {
            let id = client.server_id(&server)?;
            let v = client.get(&format!("/servers/{id}/backups"))?;
            if client.json {
                print_json(&v);
            } else {
                for p in v["plans"].as_array().into_iter().flatten() {
                    let s = &p["source"];
                    println!(
                        "{}\t{}:{}\t-> {}\t{}\t{} snapshot(s)",
                        p["name"].as_str().unwrap_or_default(),
                        s["engine"].as_str().unwrap_or("site"),
                        s["schema"]
                            .as_str()
                            .or(s["domain"].as_str())
                            .unwrap_or_default(),
                        p["storage"].as_str().unwrap_or_default(),
                        p["schedule"].as_str().unwrap_or("manual"),
                        p["snapshots"]
                    );
                }
            }
        }
        PlanCommand::Show { server, plan } => {
            let (_, path) = plan_path(client, &server, &plan)?;
            print_json(&client.get(&path)?);
        }
        PlanCommand::Remove { server, plan } => {
            let (_, path) = plan_path(client, &server, &plan)?;
            client.delete(&path)?;
            println!("plan {plan} deleted (its snapshots stay on the storage)");
        }
    }
    Ok(())
}
