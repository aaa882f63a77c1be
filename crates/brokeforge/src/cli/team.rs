//! `brokeforge team`: teams, members with roles, invitations.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

use super::common::*;
use crate::client::{Client, ClientArgs};

#[derive(Subcommand)]
pub enum TeamCommand {
    /// Your teams and your role in each.
    List,
    /// Create a team (you are its owner).
    Create {
        #[arg(long)]
        name: String,
    },
    /// Invite someone by email; prints the single-use link (valid 7 days) to send them.
    Invite {
        #[arg(long)]
        team: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["owner", "admin", "developer", "viewer"])]
        role: String,
    },
    /// The team's members with their roles.
    Members {
        #[arg(long)]
        team: String,
    },
    /// Accept an invitation (the link or its token), signed in with the invited email.
    Accept { invitation: String },
    /// Change a member's role.
    Role {
        #[arg(long)]
        team: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["owner", "admin", "developer", "viewer"])]
        role: String,
        /// Narrow the member to these servers of the team (comma-separated names).
        #[arg(long, value_delimiter = ',', conflicts_with = "all_servers")]
        servers: Vec<String>,
        /// Give a narrowed member all of the team's servers again.
        #[arg(long)]
        all_servers: bool,
    },
    /// Take a member out of the team.
    Remove {
        #[arg(long)]
        team: String,
        #[arg(long)]
        email: String,
    },
    /// Leave a team.
    Leave {
        #[arg(long)]
        team: String,
    },
    /// Require two-factor sign-in of the team's members (on or off).
    RequireTwoFactor {
        #[arg(long)]
        team: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

fn done(client: &Client, v: &Value, text: &str) {
    if client.json {
        print_json(v);
    } else {
        println!("{text}");
    }
}

pub async fn team(c: ClientArgs, cmd: TeamCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        TeamCommand::List => {
            let v = client.get("/teams")?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            for t in v["teams"].as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<32} {:<10}{}{}",
                    t["id"],
                    t["name"].as_str().unwrap_or_default(),
                    t["role"].as_str().unwrap_or_default(),
                    if t["personal"] == true {
                        " personal"
                    } else {
                        ""
                    },
                    if t["require_two_factor"] == true {
                        " (two-factor required)"
                    } else {
                        ""
                    }
                );
            }
        }
        TeamCommand::Create { name } => {
            let v = client.post("/teams", json!({"name": name}))?;
            done(
                &client,
                &v,
                &format!("created team {} ({})", name, v["team"]["id"]),
            );
        }
        TeamCommand::Invite { team, email, role } => {
            let id = team_id(&client, Some(&team))?;
            let v = client.post(
                &format!("/teams/{id}/invitations"),
                json!({"email": email, "role": role}),
            )?;
            let link = format!(
                "{}{}",
                client.base.trim_end_matches('/'),
                v["path"].as_str().unwrap_or_default()
            );
            if client.json {
                print_json(
                    &json!({"invitation": v["invitation"], "link": link, "emailed": v["emailed"]}),
                );
            } else {
                println!("{link}");
                if v["emailed"] == true {
                    eprintln!("emailed to {email}: it works once, for that email only, for 7 days");
                } else {
                    if let Some(e) = v["email_error"].as_str() {
                        eprintln!("the email did not go out: {e}");
                    }
                    eprintln!(
                        "send this link to {email}: it works once, for that email only, for 7 days"
                    );
                }
            }
        }
        TeamCommand::Members { team } => {
            let id = team_id(&client, Some(&team))?;
            let v = client.get(&format!("/teams/{id}/members"))?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            for m in v["members"].as_array().into_iter().flatten() {
                let servers = m["servers"].as_array().map(Vec::len).unwrap_or(0);
                println!(
                    "{:<40} {:<10} {}{}",
                    m["email"].as_str().unwrap_or_default(),
                    m["role"].as_str().unwrap_or_default(),
                    if m["two_factor"] == true {
                        "2fa"
                    } else {
                        "no 2fa"
                    },
                    if servers > 0 {
                        format!(", {servers} servers only")
                    } else {
                        String::new()
                    }
                );
            }
            for i in v["invitations"].as_array().into_iter().flatten() {
                if i["accepted_at"].is_null() {
                    println!(
                        "{:<40} {:<10} invited",
                        i["email"].as_str().unwrap_or_default(),
                        i["role"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        TeamCommand::Accept { invitation } => {
            let token = invitation
                .trim()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let v = client.post(
                &format!("/invitations/{}/accept", urlencode(&token)),
                json!({}),
            )?;
            done(
                &client,
                &v,
                &format!(
                    "you joined {}",
                    v["team"]["name"].as_str().unwrap_or_default()
                ),
            );
        }
        TeamCommand::Role {
            team,
            email,
            role,
            servers,
            all_servers,
        } => {
            let id = team_id(&client, Some(&team))?;
            let mut body = json!({"email": email, "role": role});
            let said = if all_servers {
                body["servers"] = json!([]);
                format!("{email} is now {role} in {team}, on all of its servers")
            } else if !servers.is_empty() {
                body["servers"] = json!(servers);
                format!(
                    "{email} is now {role} in {team}, on {} only",
                    servers.join(", ")
                )
            } else {
                format!("{email} is now {role} in {team}")
            };
            let v = client.put(&format!("/teams/{id}/members"), body)?;
            done(&client, &v, &said);
        }
        TeamCommand::Remove { team, email } => {
            let id = team_id(&client, Some(&team))?;
            let v = client.delete(&format!("/teams/{id}/members/{}", urlencode(&email)))?;
            done(&client, &v, &format!("{email} left {team}"));
        }
        TeamCommand::Leave { team } => {
            let id = team_id(&client, Some(&team))?;
            let v = client.post(&format!("/teams/{id}/leave"), json!({}))?;
            done(&client, &v, &format!("you left {team}"));
        }
        TeamCommand::RequireTwoFactor { team, state } => {
            let id = team_id(&client, Some(&team))?;
            let v = client.put(
                &format!("/teams/{id}/settings"),
                json!({"require_two_factor": state == "on"}),
            )?;
            done(
                &client,
                &v,
                &format!("two-factor sign-in is {state} for {team}"),
            );
        }
    }
    Ok(())
}
