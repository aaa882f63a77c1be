//! Database schemas and users on a server's SQL engines.

use brokeforge_core::Secret;
use brokeforge_packages::services::database::sql::{SchemaRequest, UserRequest};
use brokeforge_packages::services::database::{schema, user};
use brokeforge_store::{Job, Server};

use crate::{Domain, DomainResult};

impl Domain {
    pub async fn create_schema(&self, server: &Server, req: &SchemaRequest) -> DomainResult<Job> {
        Ok(schema::create_schema(&self.store, server.id, req).await?)
    }

    pub async fn drop_schema(
        &self,
        server: &Server,
        engine: &str,
        name: &str,
    ) -> DomainResult<Job> {
        Ok(schema::drop_schema(&self.store, server.id, engine, name).await?)
    }

    /// Create or update a user; its password is sealed before the job is queued.
    pub async fn create_database_user(
        &self,
        server: &Server,
        req: &UserRequest,
        password: &Secret,
    ) -> DomainResult<Job> {
        Ok(user::create_user(&self.store, server.id, req, password).await?)
    }

    pub async fn drop_database_user(
        &self,
        server: &Server,
        engine: &str,
        name: &str,
    ) -> DomainResult<Job> {
        Ok(user::drop_user(&self.store, server.id, engine, name).await?)
    }
}
