//! `brokeforge check`: drift of a server (what BrokeForge put there against what is there), its repair, and
//! items managed by hand.

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};

use brokeforge_web::api::types::JobResponse;

use super::common::{JobFailed, job_of, job_result, print_json};
use crate::client::{Client, ClientArgs, OutputMode, follow};
use brokeforge_web::api::types::{ByHandBody, RepairBody};

#[derive(Args)]
pub struct CheckArgs {
    #[arg(long)]
    server: String,
    /// Then repair what drifted: queue again the packages its items belong to, then check again.
    #[arg(long)]
    repair: bool,
    /// With --repair: only show what repair would queue (runs no check).
    #[arg(long, requires = "repair")]
    plan: bool,
    /// Show the newest report without checking again.
    #[arg(long, conflicts_with_all = ["repair", "by_hand", "not_by_hand"])]
    last: bool,
    /// Mark an item (as the report names it) as managed by hand: reported, never repaired.
    #[arg(long, value_name = "ITEM", conflicts_with_all = ["repair", "not_by_hand"])]
    by_hand: Option<String>,
    /// Take the "managed by hand" mark off an item.
    #[arg(long, value_name = "ITEM", conflicts_with = "repair")]
    not_by_hand: Option<String>,
    /// Wait for the check (and the repairs) and print the report.
    #[arg(long)]
    follow: bool,
}

pub async fn check(c: ClientArgs, a: CheckArgs) -> Result<()> {
    let client = Client::new(&c)?;
    let id = client.server_id(&a.server)?;
    if let Some((item, by_hand)) = a
        .by_hand
        .as_ref()
        .map(|i| (i, true))
        .or(a.not_by_hand.as_ref().map(|i| (i, false)))
    {
        let v = client.put(
            &format!("/servers/{id}/drift/by-hand"),
            ByHandBody {
                item: item.clone(),
                by_hand,
            },
        )?;
        if client.json {
            print_json(&v);
        } else if by_hand {
            println!("{item} is managed by hand: checks report it, repair leaves it alone");
        } else {
            println!("{item} is BrokeForge's again: repair puts it back when it drifts");
        }
        return Ok(());
    }
    if a.last {
        return print_report(&client, &client.get(&format!("/servers/{id}/drift"))?);
    }
    if a.plan {
        let plan = client.post(
            &format!("/servers/{id}/drift/repair"),
            RepairBody { plan: true },
        )?;
        return print_plan(&client, &plan);
    }
    let report = run_check(&client, id, a.follow).await?;
    let Some(report) = report else {
        return Ok(());
    };
    if !a.repair {
        return print_report(&client, &report);
    }
    if !client.json {
        print_report(&client, &report)?;
    }
    let plan = client.post(
        &format!("/servers/{id}/drift/repair"),
        RepairBody { plan: false },
    )?;
    if !client.json {
        print_plan(&client, &plan)?;
    }
    if !a.follow {
        return Ok(());
    }
    for step in plan["steps"].as_array().into_iter().flatten() {
        let job_id = step["job_id"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("a repair step has no job"))?;
        let job: JobResponse = client.get_as(&format!("/jobs/{job_id}"))?;
        let f = follow(&client, id, &job.job, OutputMode::Progress).await?;
        if !f.ok {
            return Err(JobFailed(f.job.id).into());
        }
    }
    if !client.json {
        println!("checking again");
    }
    let after = run_check(&client, id, true).await?.unwrap_or_default();
    if client.json {
        print_json(&json!({"before": report, "repair": plan, "after": after}));
        Ok(())
    } else {
        print_report(&client, &after)
    }
}

/// Queue a check; followed, the newest report afterwards.
async fn run_check(client: &Client, id: i64, wait: bool) -> Result<Option<Value>> {
    let v = client.post_empty(&format!("/servers/{id}/drift"))?;
    if !wait {
        job_result(client, id, &job_of(&v)?, false).await?;
        return Ok(None);
    }
    // The job itself is not printed: the report is what a check answers.
    let f = follow(client, id, &job_of(&v)?, OutputMode::Progress).await?;
    if !f.ok {
        eprintln!(
            "the check failed: {}",
            f.job.error.as_deref().unwrap_or("no reason given")
        );
        return Err(JobFailed(f.job.id).into());
    }
    Ok(Some(client.get(&format!("/servers/{id}/drift"))?))
}

fn print_report(client: &Client, r: &Value) -> Result<()> {
    if client.json {
        print_json(r);
        return Ok(());
    }
    if r["job_id"].is_null() {
        println!("no drift check yet: run `brokeforge check --server S --follow`");
        return Ok(());
    }
    let n = |k: &str| r["summary"][k].as_u64().unwrap_or(0);
    println!(
        "drift check (job {}): {} ok, {} changed, {} missing, {} unexpected",
        r["job_id"],
        n("ok"),
        n("changed"),
        n("missing"),
        n("unexpected")
    );
    for i in r["items"].as_array().into_iter().flatten() {
        if i["state"] == "ok" {
            continue;
        }
        let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
        let mut line = format!("{:<10} {:<8} {}", s("state"), s("kind"), s("item"));
        if !s("detail").is_empty() {
            line.push_str(&format!(": {}", s("detail")));
        }
        if i["by_hand"] == true {
            line.push_str(" [managed by hand]");
        }
        println!("{line}");
        if let Some(d) = i["diff"].as_str() {
            for l in d.lines() {
                println!("    {l}");
            }
        }
    }
    Ok(())
}

fn print_plan(client: &Client, p: &Value) -> Result<()> {
    if client.json {
        print_json(p);
        return Ok(());
    }
    let steps = p["steps"].as_array().cloned().unwrap_or_default();
    if steps.is_empty() {
        println!("repair: nothing BrokeForge can put back");
    }
    for s in &steps {
        let items: Vec<&str> = s["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str())
            .collect();
        let queued = match s["job_id"].as_i64() {
            Some(j) => format!(" (job {j})"),
            None => String::new(),
        };
        println!(
            "repair: {}{queued}: {}",
            s["title"].as_str().unwrap_or_default(),
            items.join(", ")
        );
    }
    for l in p["left"].as_array().into_iter().flatten() {
        println!(
            "left alone: {} ({}): {}",
            l["item"].as_str().unwrap_or_default(),
            l["state"].as_str().unwrap_or_default(),
            l["why"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
