//! PostgreSQL (`PostgreSqlInstaller`, `PostgreSqlRemover`): the distribution's version.

use brokeforge_core::ValidationError;
use serde_json::json;

use super::engine::{DatabaseInstaller, DatabaseRemover, Engine, EngineInput, EngineSpec};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan};
use crate::templates::{self, Template};

pub static CONF: Template = Template {
    name: "postgresql/brokeforge.conf",
    source: include_str!("brokeforge.conf.j2"),
};
pub static PG_HBA: Template = Template {
    name: "postgresql/pg_hba.conf",
    source: include_str!("pg_hba.conf.j2"),
};

pub struct PostgreSql;
pub type PostgreSqlInstaller = DatabaseInstaller<PostgreSql>;
pub type PostgreSqlRemover = DatabaseRemover<PostgreSql>;

impl EngineSpec for PostgreSql {
    const ENGINE: Engine = Engine::PostgreSql;
    const INSTALLER_JOB: &'static str = "postgresql_installer";
    const REMOVER_JOB: &'static str = "postgresql_remover";

    fn configure(plan: Plan, input: &EngineInput) -> Result<Plan, PackageError> {
        let os = &input.os;
        let opened = !input.sources.is_empty();
        let v = Engine::postgres_version(os).ok_or_else(|| {
            ValidationError::new("os", format!("no PostgreSQL version known for {os}"))
        })?;
        let conf = templates::render(
            &CONF,
            json!({"listen_addresses": if opened { "*" } else { "localhost" }}),
        )?;
        let hba = templates::render(&PG_HBA, json!({"allowed_sources": input.sources}))?;
        Ok(plan
            .put_file(
                FileStep::new(
                    format!("/etc/postgresql/{v}/main/conf.d/brokeforge.conf"),
                    FileContents::Text(conf),
                    0o644,
                )
                .owner("postgres:postgres"),
            )
            .put_file(
                FileStep::new(
                    format!("/etc/postgresql/{v}/main/pg_hba.conf"),
                    FileContents::Text(hba),
                    0o640,
                )
                .owner("postgres:postgres"),
            ))
    }
}

pub fn register(r: &mut Registry) {
    r.template(&CONF);
    r.template(&PG_HBA);
    super::engine::register::<PostgreSql>(r, "PostgreSQL server");
}

#[cfg(test)]
mod tests {
    #[test]
    fn plans() {
        let (install, remove) =
            super::super::engine::snapshot_plans::<super::PostgreSql>("debian 12");
        insta::assert_snapshot!("postgresql_install", install);
        insta::assert_snapshot!("postgresql_remove", remove);
    }
}
