//! MariaDB (`MariaDbInstaller`, `MariaDbRemover`): Debian's MySQL-compatible server.

use serde_json::json;

use super::engine::{DatabaseInstaller, DatabaseRemover, Engine, EngineInput, EngineSpec};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan};
use crate::templates::{self, Template};

pub static SERVER_CNF: Template = Template {
    name: "mariadb/server.cnf",
    source: include_str!("server.cnf.j2"),
};

pub struct MariaDb;
pub type MariaDbInstaller = DatabaseInstaller<MariaDb>;
pub type MariaDbRemover = DatabaseRemover<MariaDb>;

impl EngineSpec for MariaDb {
    const ENGINE: Engine = Engine::MariaDb;
    const INSTALLER_JOB: &'static str = "mariadb_installer";
    const REMOVER_JOB: &'static str = "mariadb_remover";

    fn configure(plan: Plan, input: &EngineInput) -> Result<Plan, PackageError> {
        server_cnf(plan, input, "/etc/mysql/mariadb.conf.d")
    }
}

/// The server's settings (MySQL reads the same file from its own directory).
pub fn server_cnf(plan: Plan, input: &EngineInput, dir: &str) -> Result<Plan, PackageError> {
    let opened = !input.sources.is_empty();
    let cnf = templates::render(
        &SERVER_CNF,
        json!({"bind_address": if opened { "0.0.0.0" } else { "127.0.0.1" }, "max_connections": 200}),
    )?;
    Ok(plan.put_file(FileStep::new(
        format!("{dir}/60-brokeforge.cnf"),
        FileContents::Text(cnf),
        0o644,
    )))
}

pub fn register(r: &mut Registry) {
    r.template(&SERVER_CNF);
    super::engine::register::<MariaDb>(r, "MariaDB server (excludes MySQL)");
}

#[cfg(test)]
mod tests {
    #[test]
    fn plans() {
        let (install, remove) = super::super::engine::snapshot_plans::<super::MariaDb>("debian 12");
        insta::assert_snapshot!("mariadb_install", install);
        insta::assert_snapshot!("mariadb_remove", remove);
    }
}
