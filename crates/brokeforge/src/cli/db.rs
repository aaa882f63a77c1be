//! `brokeforge db`: database schemas and users.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use super::common::*;
use crate::client::{Client, ClientArgs};

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
                job_result(&client, id, &job_of(&v)?, t.follow).await?;
            }
            SchemaCommand::Drop(t) => {
                let id = client.server_id(&t.server)?;
                let v = client.delete(&format!(
                    "/servers/{id}/databases/schemas/{}/{}",
                    urlencode(&t.engine),
                    urlencode(&t.name)
                ))?;
                job_result(&client, id, &job_of(&v)?, t.follow).await?;
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
                        job_result(&client, id, &job_of(&v)?, t.follow).await?;
                    }
                }
                let v = client.post(
                    &format!("/servers/{id}/databases/users"),
                    json!({"engine": t.engine, "name": t.name, "schemas": schemas, "privileges": privileges, "password": password}),
                )?;
                job_result(&client, id, &job_of(&v)?, t.follow).await?;
            }
            UserCommand::Drop(t) => {
                let id = client.server_id(&t.server)?;
                let v = client.delete(&format!(
                    "/servers/{id}/databases/users/{}/{}",
                    urlencode(&t.engine),
                    urlencode(&t.name)
                ))?;
                job_result(&client, id, &job_of(&v)?, t.follow).await?;
            }
        },
    }
    Ok(())
}
