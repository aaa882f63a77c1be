//! `brokeforge db`: database schemas and users.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::common::*;
use crate::client::{Client, ClientArgs};
use brokeforge_packages::services::database::sql::{Privileges, SchemaRequest, UserRequest};
use brokeforge_web::api::types::DbUserBody;

/// A schema with the charset and collation the API gives when none is named.
fn schema_request(engine: &str, name: &str) -> SchemaRequest {
    SchemaRequest {
        engine: engine.to_string(),
        name: name.to_string(),
        charset: brokeforge_packages::services::database::sql::default_charset(),
        collation: brokeforge_packages::services::database::sql::default_collation(),
    }
}

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
                    schema_request(&t.engine, &t.name),
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
                            schema_request(&t.engine, s),
                        )?;
                        // Jobs of a server run in order; with --follow each is waited for.
                        job_result(&client, id, &job_of(&v)?, t.follow).await?;
                    }
                }
                let v = client.post(
                    &format!("/servers/{id}/databases/users"),
                    DbUserBody {
                        request: UserRequest {
                            engine: t.engine.clone(),
                            name: t.name.clone(),
                            schemas,
                            // The argument's values are these three.
                            privileges: match privileges.as_str() {
                                "all" => Privileges::All,
                                "read-only" => Privileges::ReadOnly,
                                _ => Privileges::ReadWrite,
                            },
                        },
                        password,
                    },
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
