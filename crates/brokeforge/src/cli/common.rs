//! What the client commands share: settings from `--set`, reading secrets from stdin, JSON output, and
//! printing or following a queued job.

use std::io::Read;

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

pub(crate) use crate::client::job_of;
pub(crate) use crate::client::urlencode;
use crate::client::{Client, OutputMode, follow, job_title};
use brokeforge_store::Job;

/// `key=value`, as `--set` takes it.
pub(crate) fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not key=value"))?;
    if k.is_empty() {
        return Err(format!("`{s}` has no key"));
    }
    Ok((k.to_string(), v.to_string()))
}

pub(crate) fn settings(set: &[(String, String)]) -> std::collections::BTreeMap<String, Value> {
    set.iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

pub(crate) fn read_stdin(what: &str) -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .with_context(|| format!("reading {what} from standard input"))?;
    Ok(s)
}

pub(crate) fn password_from_stdin() -> Result<String> {
    let s = read_stdin("the password")?;
    let pw = s.strip_suffix('\n').unwrap_or(&s);
    Ok(pw.strip_suffix('\r').unwrap_or(pw).to_string())
}

pub(crate) fn print_json<T: serde::Serialize + ?Sized>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Print a queued job, or follow it; an error when following ends in anything but success.
pub(crate) async fn job_result(
    client: &Client,
    server_id: i64,
    job: &Job,
    do_follow: bool,
) -> Result<Job> {
    if !do_follow {
        if client.json {
            print_json(&json!({"job": job}));
        } else {
            println!(
                "queued job {} ({}); follow it with `brokeforge jobs show {} --follow`",
                job.id,
                job_title(job),
                job.id
            );
        }
        return Ok(job.clone());
    }
    let f = follow(client, server_id, job, OutputMode::Progress).await?;
    if client.json {
        print_json(&json!({"job": f.job}));
    }
    if !f.ok {
        return Err(JobFailed(f.job.id).into());
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

/// The id of one of the caller's teams, by name or id; without one, the caller's personal team.
pub(crate) fn team_id(client: &Client, team: Option<&str>) -> Result<i64> {
    let v = client.get("/teams")?;
    let mut teams = v["teams"].as_array().into_iter().flatten();
    match team {
        Some(team) => teams
            .find(|t| {
                t["name"] == team
                    || t["id"].as_i64().map(|i| i.to_string()).as_deref() == Some(team)
            })
            .and_then(|t| t["id"].as_i64())
            .ok_or_else(|| anyhow!("you are in no team named {team} (see `brokeforge team list`)")),
        None => teams
            .find(|t| t["personal"] == true)
            .and_then(|t| t["id"].as_i64())
            .ok_or_else(|| anyhow!("you have no personal team: give --team")),
    }
}
