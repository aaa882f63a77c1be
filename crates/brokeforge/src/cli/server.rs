//! `brokeforge server`: add (by script or directly), list, show, script, remove, pin-host-key.

use brokeforge_domain::servers::NewServer;
use brokeforge_store::Job;
use brokeforge_web::api::types::{AddedServer, JobList, JobResponse, ServerDetail, ServerEntry};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::common::*;
use crate::client::{Client, ClientArgs};
use brokeforge_web::api::types::{MoveBody, PinBody, TagsBody};

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
        /// The team it belongs to (name or id); your personal team when left out.
        #[arg(long)]
        team: Option<String>,
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
    /// Forget a server (nothing on it changes; with --remove-access BrokeForge's keys and sudo rights are
    /// taken off it first).
    Remove {
        server: String,
        #[arg(long)]
        remove_access: bool,
        /// With --remove-access: wait for it.
        #[arg(long)]
        follow: bool,
    },
    /// Pin the server's SSH host key.
    PinHostKey {
        server: String,
        #[arg(long)]
        fingerprint: String,
    },
    /// Move a server into another of your teams (members' SSH keys the new team does not allow leave it).
    /// Add and remove tags (sets of servers for `recipe run --tag`).
    Tag {
        #[arg(long)]
        server: String,
        #[arg(long)]
        add: Vec<String>,
        #[arg(long)]
        remove: Vec<String>,
    },
    Move {
        server: String,
        /// The team (name or id).
        #[arg(long)]
        team: String,
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
            team,
            follow: do_follow,
        } => {
            let key = match &root_key {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .with_context(|| format!("reading the root key {}", p.display()))?,
                ),
                None => None,
            };
            let new = NewServer {
                name: name.clone(),
                public_ip: ip,
                ssh_port: Some(port),
                host_key_fingerprint,
                root_key: key,
                trust_on_first_use,
                team,
            };
            let made: AddedServer = client.post_as("/servers", &new)?;
            let id = made.server.id;
            if client.json && !do_follow {
                print_json(&serde_json::to_value(&made)?);
                return Ok(());
            }
            match &made.job {
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
                        print_json(&serde_json::to_value(&made)?);
                    } else {
                        println!(
                            "added server {name} (id {id}). Run this as root on it (valid for an hour, once):\n"
                        );
                        println!("  {}\n", made.script);
                    }
                    if do_follow {
                        follow_script(&client, id).await?;
                    }
                }
            }
        }
        ServerCommand::List => {
            let list = client.all_servers()?;
            if client.json {
                print_json(&json!({"servers": list}));
                return Ok(());
            }
            if list.is_empty() {
                println!(
                    "no servers yet: add one with `brokeforge server add --name NAME --ip IP`"
                );
            }
            println!(
                "{:<6} {:<20} {:<22} {:<12} {:<12} SERVICES",
                "ID", "NAME", "ADDRESS", "STATUS", "OS"
            );
            for ServerEntry {
                server: sv,
                services,
            } in list
            {
                let services: Vec<&str> =
                    services.iter().map(|x| x.service_name.as_str()).collect();
                println!(
                    "{:<6} {:<20} {:<22} {:<12} {:<12} {}",
                    sv.id,
                    sv.name,
                    format!("{}:{}", sv.public_ip, sv.ssh_port),
                    sv.provision_status.as_str(),
                    sv.os.as_deref().unwrap_or("-"),
                    services.join(",")
                );
            }
        }
        ServerCommand::Show { server } => {
            let id = client.server_id(&server)?;
            let v: ServerDetail = client.get_as(&format!("/servers/{id}"))?;
            if client.json {
                print_json(&serde_json::to_value(&v)?);
                return Ok(());
            }
            let s = &v.server;
            println!("{} (id {})", s.name, s.id);
            println!("  address      {}:{}", s.public_ip, s.ssh_port);
            println!(
                "  status       {} / {}",
                s.provision_status.as_str(),
                s.connection_status.as_str()
            );
            println!(
                "  os           {}",
                s.os.as_deref().unwrap_or("not detected yet")
            );
            println!(
                "  host key     {}",
                s.host_key_fingerprint.as_deref().unwrap_or("not pinned")
            );
            for svc in &v.services {
                println!(
                    "  service      {:<12} {}{}",
                    svc.service_name,
                    svc.status.as_str(),
                    svc.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
            for site in &v.sites {
                println!(
                    "  site         {:<30} {}",
                    site.domain,
                    site.status.as_str()
                );
            }
        }
        ServerCommand::Script { server } => {
            let id = client.server_id(&server)?;
            let v = client.post_empty(&format!("/servers/{id}/script"))?;
            if client.json {
                print_json(&v);
            } else {
                println!("{}", v["script"].as_str().unwrap_or_default());
            }
        }
        ServerCommand::Remove {
            server,
            remove_access: true,
            follow,
        } => {
            let id = client.server_id(&server)?;
            let v = client.delete(&format!("/servers/{id}?remove_access=true"))?;
            if client.json && !follow {
                print_json(&v);
            } else if follow {
                // The job forgets the server (and itself) at the end: success is the server gone.
                let job_id = v["job"]["id"].as_i64().unwrap_or_default();
                let started = std::time::Instant::now();
                loop {
                    let page = client.get(&format!("/servers?cursor={}&limit=1", id - 1))?;
                    let present = page["servers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|s| s["server"]["id"].as_i64() == Some(id));
                    if !present {
                        break;
                    }
                    let job = client.get(&format!("/jobs/{job_id}"))?;
                    match job["job"]["status"].as_str() {
                        Some("failed") | Some("cancelled") => bail!(
                            "removing access failed: {} (the server is still in BrokeForge; `brokeforge server remove {server}` forgets it without touching it)",
                            job["job"]["error"].as_str().unwrap_or("no reason given")
                        ),
                        _ => {}
                    }
                    if started.elapsed() > std::time::Duration::from_secs(600) {
                        bail!(
                            "removing access takes over 10 minutes: see `brokeforge jobs show {job_id}`"
                        );
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                println!("removed BrokeForge's access to {server} and forgot it");
            } else {
                println!(
                    "removing BrokeForge's access to {server} (job {}); it is forgotten when that is done",
                    v["job"]["id"]
                );
            }
        }
        ServerCommand::Remove { server, .. } => {
            let id = client.server_id(&server)?;
            let v = client.delete(&format!("/servers/{id}"))?;
            if client.json {
                print_json(&v);
            } else {
                println!("forgot server {server}; nothing on it was changed");
            }
        }
        ServerCommand::Tag {
            server,
            add,
            remove,
        } => {
            let id = client.server_id(&server)?;
            let v = client.put(&format!("/servers/{id}/tags"), TagsBody { add, remove })?;
            if client.json {
                print_json(&v);
            } else {
                let tags: Vec<&str> = v["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{server}: {}",
                    if tags.is_empty() {
                        "no tags".to_string()
                    } else {
                        tags.join(", ")
                    }
                );
            }
        }
        ServerCommand::Move { server, team } => {
            let id = client.server_id(&server)?;
            let v = client.put(
                &format!("/servers/{id}/team"),
                MoveBody { team: team.clone() },
            )?;
            if client.json {
                print_json(&v);
            } else {
                println!("{server} is now in team {team}");
            }
        }
        ServerCommand::PinHostKey {
            server,
            fingerprint,
        } => {
            let id = client.server_id(&server)?;
            let v = client.post(&format!("/servers/{id}/host-key"), PinBody { fingerprint })?;
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
pub(crate) async fn follow_script(client: &Client, server_id: i64) -> Result<()> {
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
            let job: JobResponse = client.get_as(&format!("/jobs/{job_id}"))?;
            job_result(client, server_id, &job.job, true).await?;
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
pub(crate) async fn follow_next(client: &Client, server_id: i64, after: &Job) -> Result<()> {
    for _ in 0..20 {
        let page: JobList = client.get_as(&format!("/servers/{server_id}/jobs"))?;
        let next = page
            .jobs
            .into_iter()
            .filter(|j| j.id > after.id)
            .min_by_key(|j| j.id);
        if let Some(j) = next {
            let done = job_result(client, server_id, &j, true).await?;
            return Box::pin(follow_next(client, server_id, &done)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if after.kind != "server_access_installer" && after.kind != "connection_check_installer" {
            return Ok(());
        }
    }
    Ok(())
}
