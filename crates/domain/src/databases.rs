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

/// The schemas and users BrokeForge keeps on one SQL engine of a server.
#[derive(Debug, Clone)]
pub struct EngineDatabases {
    pub engine: String,
    pub schemas: Vec<String>,
    pub users: Vec<String>,
}

impl Domain {
    /// The server's active SQL engines with their schemas and users.
    pub async fn database_engines(&self, server: &Server) -> DomainResult<Vec<EngineDatabases>> {
        use brokeforge_core::ServiceStatus;
        use brokeforge_packages::base::config::Configuration;
        use brokeforge_packages::services::database::engine::{DatabaseConfig, Engine};
        let services = self.store.services(server.id).await?;
        let mut out = Vec::new();
        for engine in Engine::ALL.into_iter().filter(|e| e.has_schemas()) {
            let Some(s) = services
                .iter()
                .find(|s| s.service_name == engine.name() && s.status == ServiceStatus::Active)
            else {
                continue;
            };
            let config = DatabaseConfig::read_or_default(&s.configuration);
            out.push(EngineDatabases {
                engine: engine.name().to_string(),
                schemas: config.schemas.into_iter().map(|x| x.name).collect(),
                users: config.users.into_iter().map(|x| x.name).collect(),
            });
        }
        Ok(out)
    }

    /// The PHP versions the server's web server has.
    pub async fn php_versions(&self, server: &Server) -> DomainResult<Vec<String>> {
        use brokeforge_packages::services::webserver::nginx::WebServerConfig;
        Ok(WebServerConfig::current(&self.store, server.id)
            .await?
            .php_versions)
    }
}
