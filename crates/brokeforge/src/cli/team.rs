//! `brokeforge team`: teams, members with roles, invitations.

use anyhow::Result;
use brokeforge_web::api::types::{
    Done, InvitationCreated, Invite, JoinedTeam, NewTeam, SetRole, TeamList, TeamMembers,
    TeamResponse, TeamSettings,
};
use clap::Subcommand;
use serde::Serialize;
use serde_json::json;

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

fn done(client: &Client, v: &impl Serialize, text: &str) {
    if client.json {
        print_json(&json!(v));
    } else {
        println!("{text}");
    }
}

pub async fn team(c: ClientArgs, cmd: TeamCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        TeamCommand::List => {
            let v: TeamList = client.get_as("/teams")?;
            if client.json {
                print_json(&json!(v));
                return Ok(());
            }
            for t in &v.teams {
                println!(
                    "{:<6} {:<32} {:<10}{}{}",
                    t.id,
                    t.name,
                    t.role.as_str(),
                    if t.personal { " personal" } else { "" },
                    if t.require_two_factor {
                        " (two-factor required)"
                    } else {
                        ""
                    }
                );
            }
        }
        TeamCommand::Create { name } => {
            let v: TeamResponse = client.post_as("/teams", &NewTeam { name })?;
            let said = format!("created team {} ({})", v.team.name, v.team.id);
            done(&client, &v, &said);
        }
        TeamCommand::Invite { team, email, role } => {
            let id = team_id(&client, Some(&team))?;
            let v: InvitationCreated = client.post_as(
                &format!("/teams/{id}/invitations"),
                &Invite {
                    email: email.clone(),
                    role,
                },
            )?;
            let link = format!("{}{}", client.base.trim_end_matches('/'), v.path);
            if client.json {
                print_json(
                    &json!({"invitation": v.invitation, "link": link, "emailed": v.emailed}),
                );
            } else {
                println!("{link}");
                if v.emailed {
                    eprintln!("emailed to {email}: it works once, for that email only, for 7 days");
                } else {
                    if let Some(e) = &v.email_error {
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
            let v: TeamMembers = client.get_as(&format!("/teams/{id}/members"))?;
            if client.json {
                print_json(&json!(v));
                return Ok(());
            }
            for m in &v.members {
                let servers = m.servers.len();
                println!(
                    "{:<40} {:<10} {}{}",
                    m.email,
                    m.role.as_str(),
                    if m.two_factor { "2fa" } else { "no 2fa" },
                    if servers > 0 {
                        format!(", {servers} servers only")
                    } else {
                        String::new()
                    }
                );
            }
            for i in v.invitations.iter().filter(|i| i.accepted_at.is_none()) {
                println!("{:<40} {:<10} invited", i.email, i.role.as_str());
            }
        }
        TeamCommand::Accept { invitation } => {
            let token = invitation
                .trim()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let v: JoinedTeam = client.post_as(
                &format!("/invitations/{}/accept", urlencode(&token)),
                &serde_json::Map::new(),
            )?;
            done(&client, &v, &format!("you joined {}", v.team.name));
        }
        TeamCommand::Role {
            team,
            email,
            role,
            servers,
            all_servers,
        } => {
            let id = team_id(&client, Some(&team))?;
            let mut body = SetRole {
                email: email.clone(),
                role: role.clone(),
                servers: None,
            };
            let said = if all_servers {
                body.servers = Some(Vec::new());
                format!("{email} is now {role} in {team}, on all of its servers")
            } else if !servers.is_empty() {
                body.servers = Some(servers.clone());
                format!(
                    "{email} is now {role} in {team}, on {} only",
                    servers.join(", ")
                )
            } else {
                format!("{email} is now {role} in {team}")
            };
            let v: Done = client.put_as(&format!("/teams/{id}/members"), &body)?;
            done(&client, &v, &said);
        }
        TeamCommand::Remove { team, email } => {
            let id = team_id(&client, Some(&team))?;
            let v: Done =
                client.delete_as(&format!("/teams/{id}/members/{}", urlencode(&email)))?;
            done(&client, &v, &format!("{email} left {team}"));
        }
        TeamCommand::Leave { team } => {
            let id = team_id(&client, Some(&team))?;
            let v: Done = client.post_as(&format!("/teams/{id}/leave"), &serde_json::Map::new())?;
            done(&client, &v, &format!("you left {team}"));
        }
        TeamCommand::RequireTwoFactor { team, state } => {
            let id = team_id(&client, Some(&team))?;
            let v: TeamResponse = client.put_as(
                &format!("/teams/{id}/settings"),
                &TeamSettings {
                    require_two_factor: state == "on",
                },
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
