//! `brokeforge events` and `brokeforge jobs`: a server's activity, and jobs (show, cancel, retry).

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::common::*;
use brokeforge_store::{JobStatus, ProvisionEvent};
use brokeforge_web::api::types::{EventList, JobList, JobResponse};

use crate::client::{Client, ClientArgs, job_title};

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
    let print = |e: &ProvisionEvent| {
        if client.json {
            println!("{}", json!(e));
        } else {
            println!(
                "{:<8} {:<10} {:<9} [{}/{}] {:<40} {}{}",
                e.job_id.map(|j| j.to_string()).unwrap_or_default(),
                e.service_type.as_str(),
                e.provision_type.as_str(),
                e.current_step,
                e.total_steps,
                e.label,
                e.status.as_str(),
                e.error
                    .as_deref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            );
        }
    };
    // Page by page (the API answers at most 1000 at a time).
    let mut cursor = String::new();
    loop {
        let page: EventList =
            client.get_as(&format!("/servers/{id}/events?cursor={cursor}&limit=1000"))?;
        page.events.iter().for_each(print);
        match page.next_cursor {
            Some(next) => cursor = urlencode(&next),
            None => break,
        }
    }
    if !a.follow {
        return Ok(());
    }
    let mut rx = client.stream(id, "")?;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) if ev.event == "milestone" => print(&serde_json::from_value(ev.data)?),
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
            let page: JobList = client.get_as(&format!("/servers/{id}/jobs"))?;
            if client.json {
                print_json(&json!(page));
                return Ok(());
            }
            for j in &page.jobs {
                println!(
                    "{:<8} {:<28} {:<10} {}",
                    j.id,
                    job_title(j),
                    j.status.as_str(),
                    j.error.as_deref().unwrap_or_default()
                );
            }
        }
        JobsCommand::Show {
            id,
            follow: do_follow,
        } => {
            let v: JobResponse = client.get_as(&format!("/jobs/{id}"))?;
            let job = &v.job;
            if do_follow && !job.status.is_finished() {
                let server = job
                    .server_id
                    .ok_or_else(|| anyhow!("the job has no server"))?;
                job_result(&client, server, job, true).await?;
                return Ok(());
            }
            if client.json {
                print_json(&json!(v));
            } else {
                println!(
                    "job {} {}: {}{}",
                    job.id,
                    job_title(job),
                    job.status.as_str(),
                    job.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
            if matches!(job.status, JobStatus::Failed | JobStatus::Cancelled) {
                return Err(JobFailed(id).into());
            }
        }
        JobsCommand::Cancel { id } => {
            let v: JobResponse =
                client.post_as(&format!("/jobs/{id}/cancel"), &serde_json::Map::new())?;
            if client.json {
                print_json(&json!(v));
            } else {
                println!("job {id}: {}", v.job.status.as_str());
            }
        }
        JobsCommand::Retry {
            id,
            follow: do_follow,
        } => {
            let v: JobResponse =
                client.post_as(&format!("/jobs/{id}/retry"), &serde_json::Map::new())?;
            let server = v.job.server_id.unwrap_or_default();
            job_result(&client, server, &v.job, do_follow).await?;
        }
    }
    Ok(())
}
