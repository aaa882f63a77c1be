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
        server_cnf(plan, input, MARIADB_CNF_DIR)
    }
}

/// The server's settings (MySQL reads the same file from its own directory).
pub fn server_cnf(plan: Plan, input: &EngineInput, dir: &str) -> Result<Plan, PackageError> {
    let cnf = server_cnf_text(!input.sources.is_empty())?;
    Ok(plan.put_file(FileStep::new(
        server_cnf_path(dir),
        FileContents::Text(cnf),
        0o644,
    )))
}

/// The settings file in an engine's configuration directory.
pub fn server_cnf_path(dir: &str) -> String {
    format!("{dir}/60-brokeforge.cnf")
}

/// The settings file's text: bound to localhost unless remote access is `opened` (what drift compares with).
pub fn server_cnf_text(opened: bool) -> Result<String, PackageError> {
    templates::render(
        &SERVER_CNF,
        json!({"bind_address": if opened { "0.0.0.0" } else { "127.0.0.1" }, "max_connections": 200}),
    )
}

pub const MARIADB_CNF_DIR: &str = "/etc/mysql/mariadb.conf.d";
pub const MYSQL_CNF_DIR: &str = "/etc/mysql/mysql.conf.d";

/// The configuration directory MariaDB (`mariadb`) or MySQL (`mysql`) reads.
pub fn cnf_dir(service: &str) -> Option<&'static str> {
    match service {
        "mariadb" => Some(MARIADB_CNF_DIR),
        "mysql" => Some(MYSQL_CNF_DIR),
        _ => None,
    }
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
