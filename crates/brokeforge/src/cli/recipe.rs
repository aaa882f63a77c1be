//! `brokeforge recipe`: named scripts of a team, run on many servers in waves (a canary, then N at a time,
//! stopping new servers past a failure threshold), with a plan first and a per-server view of each run.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use serde_json::Value;

use super::common::{print_json, urlencode};
use crate::client::{Client, ClientArgs};
use brokeforge_domain::recipes::{RecipeBody, RunBody};

#[derive(Subcommand)]
pub enum RecipeCommand {
    /// Create a recipe from a script file, or change the team's recipe of that name.
    Create {
        #[arg(long)]
        name: String,
        /// The script (run with bash on each server).
        #[arg(long)]
        file: std::path::PathBuf,
        /// Who it runs as: brokeforge (the app user) or root (needs a role that may make root-level changes).
        #[arg(long, default_value = "brokeforge", value_parser = ["brokeforge", "root"])]
        user: String,
        /// The team (name or id); your own team when absent.
        #[arg(long)]
        team: Option<String>,
    },
    /// Recipes of your teams.
    List,
    /// Delete a recipe.
    Delete { name: String },
    /// Run a recipe on servers of its team: --servers a,b, --tag T or --all.
    Run {
        name: String,
        #[arg(long, value_delimiter = ',')]
        servers: Vec<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        all: bool,
        /// Servers at a time after the canary.
        #[arg(long, default_value_t = 10)]
        parallel: u32,
        /// Servers that run first, alone.
        #[arg(long, default_value_t = 1)]
        canary: u32,
        /// No new servers once more than this many failed.
        #[arg(long, default_value_t = 0)]
        max_failures: u32,
        /// Only show what would run.
        #[arg(long)]
        plan: bool,
        /// Wait for the run's end, showing each server as it finishes; exits 1 unless every server succeeded.
        #[arg(long)]
        follow: bool,
    },
    /// Recent runs.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// A run: each server's state and exit code.
    Show { run: i64 },
    /// Go on with a stopped run.
    Resume {
        run: i64,
        #[arg(long)]
        follow: bool,
    },
}

fn print_run(v: &Value) {
    let run = &v["run"];
    println!(
        "run {} of {}: {} (parallel {}, canary {}, max failures {})",
        run["id"],
        v["recipe"].as_str().unwrap_or_default(),
        run["status"].as_str().unwrap_or_default(),
        run["parallel"],
        run["canary"],
        run["max_failures"]
    );
    for s in v["servers"].as_array().into_iter().flatten() {
        let exit = match s["exit_code"].as_i64() {
            Some(c) => format!("exit {c}"),
            None => String::new(),
        };
        let took = s["duration_ms"]
            .as_i64()
            .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            .unwrap_or_default();
        let job = s["job_id"]
            .as_i64()
            .map(|j| format!("job {j}"))
            .unwrap_or_default();
        println!(
            "  {:<24} {:<8} {:<8} {:<8} {job}",
            s["name"].as_str().unwrap_or_default(),
            s["shown_state"].as_str().unwrap_or_default(),
            exit,
            took
        );
    }
    let summary: Vec<String> = v["summary"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    println!("  {}", summary.join(", "));
}

/// Wait for the run to end (or stop), printing servers as they finish.
async fn follow(client: &Client, run: i64) -> Result<()> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let v = client.get(&format!("/recipe-runs/{run}"))?;
        for s in v["servers"].as_array().into_iter().flatten() {
            let name = s["name"].as_str().unwrap_or_default().to_string();
            let state = s["state"].as_str().unwrap_or_default().to_string();
            if matches!(state.as_str(), "done" | "failed") && seen.get(&name) != Some(&state) {
                if !client.json {
                    eprintln!(
                        "{name}: {state}{}",
                        s["exit_code"]
                            .as_i64()
                            .map(|c| format!(" (exit {c})"))
                            .unwrap_or_default()
                    );
                }
                seen.insert(name, state);
            }
        }
        let status = v["run"]["status"].as_str().unwrap_or_default().to_string();
        let busy = v["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| matches!(s["state"].as_str(), Some("queued" | "running")));
        if status != "running" && !busy {
            if client.json {
                print_json(&v);
            } else {
                print_run(&v);
            }
            return match status.as_str() {
                "done" => Ok(()),
                "stopped" => Err(anyhow!(
                    "the run stopped: too many servers failed (brokeforge recipe resume {run} goes on)"
                )),
                other => Err(anyhow!("the run ended {other}: some servers failed")),
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn recipe(c: ClientArgs, cmd: RecipeCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        RecipeCommand::Create {
            name,
            file,
            user,
            team,
        } => {
            let script = std::fs::read_to_string(&file)
                .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
            let v = client.post(
                "/recipes",
                RecipeBody {
                    name: name.clone(),
                    script,
                    user: Some(user.clone()),
                    team,
                },
            )?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "recipe {name} saved (id {}, runs as {user})",
                    v["recipe"]["id"]
                );
            }
        }
        RecipeCommand::List => {
            let v = client.get("/recipes")?;
            if client.json {
                print_json(&v);
            } else {
                for r in v["recipes"].as_array().into_iter().flatten() {
                    println!(
                        "{:<6} {:<30} as {}",
                        r["id"],
                        r["name"].as_str().unwrap_or_default(),
                        r["run_as"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        RecipeCommand::Delete { name } => {
            client.delete(&format!("/recipes/{}", urlencode(&name)))?;
            if !client.json {
                println!("recipe {name} deleted");
            }
        }
        RecipeCommand::Run {
            name,
            servers,
            tag,
            all,
            parallel,
            canary,
            max_failures,
            plan,
            follow: do_follow,
        } => {
            let v = client.post(
                &format!("/recipes/{}/runs", urlencode(&name)),
                RunBody {
                    servers,
                    tag,
                    all,
                    parallel: Some(parallel),
                    canary: Some(canary),
                    max_failures: Some(max_failures),
                    plan,
                },
            )?;
            if plan {
                if client.json {
                    print_json(&v);
                    return Ok(());
                }
                let p = &v["plan"];
                println!(
                    "recipe {} as {} on {} server(s): canary {}, then {} at a time; no new servers after {} failure(s)",
                    p["recipe"].as_str().unwrap_or_default(),
                    p["run_as"].as_str().unwrap_or_default(),
                    p["servers"].as_array().map(Vec::len).unwrap_or(0),
                    p["canary"],
                    p["parallel"],
                    p["max_failures"]
                );
                for s in p["servers"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<24} {}",
                        s["name"].as_str().unwrap_or_default(),
                        s["wave"].as_str().unwrap_or_default()
                    );
                }
                println!("script:");
                for line in p["script"].as_str().unwrap_or_default().lines() {
                    println!("  | {line}");
                }
                return Ok(());
            }
            let run = v["run"]["id"].as_i64().unwrap_or_default();
            if do_follow {
                follow(&client, run).await?;
            } else if client.json {
                print_json(&v);
            } else {
                println!("run {run} started (brokeforge recipe show {run})");
            }
        }
        RecipeCommand::Runs { limit } => {
            let v = client.get(&format!("/recipe-runs?limit={limit}"))?;
            if client.json {
                print_json(&v);
            } else {
                for r in v["runs"].as_array().into_iter().flatten() {
                    println!(
                        "{:<6} recipe {:<6} {:<8} as {}",
                        r["id"],
                        r["recipe_id"],
                        r["status"].as_str().unwrap_or_default(),
                        r["run_as"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        RecipeCommand::Show { run } => {
            let v = client.get(&format!("/recipe-runs/{run}"))?;
            if client.json {
                print_json(&v);
            } else {
                print_run(&v);
            }
        }
        RecipeCommand::Resume {
            run,
            follow: do_follow,
        } => {
            client.post_empty(&format!("/recipe-runs/{run}/resume"))?;
            if do_follow {
                follow(&client, run).await?;
            } else if !client.json {
                println!("run {run} goes on");
            }
        }
    }
    Ok(())
}
