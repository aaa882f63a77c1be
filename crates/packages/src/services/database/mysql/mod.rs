//! MySQL (`MySqlInstaller`, `MySqlRemover`) from Ubuntu's archive; Debian ships MariaDB instead.

use super::engine::{DatabaseInstaller, DatabaseRemover, Engine, EngineInput, EngineSpec};
use super::mariadb::server_cnf;
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan};

pub struct MySql;
pub type MySqlInstaller = DatabaseInstaller<MySql>;
pub type MySqlRemover = DatabaseRemover<MySql>;

impl EngineSpec for MySql {
    const ENGINE: Engine = Engine::MySql;
    const INSTALLER_JOB: &'static str = "mysql_installer";
    const REMOVER_JOB: &'static str = "mysql_remover";

    fn configure(plan: Plan, input: &EngineInput) -> Result<Plan, PackageError> {
        server_cnf(plan, input, super::mariadb::MYSQL_CNF_DIR)
    }

    fn unavailable(os: &str) -> Option<String> {
        os.starts_with("debian").then(|| {
            format!(
                "MySQL is not in {os}'s package archive. Install MariaDB instead: a drop-in replacement that Debian ships and maintains"
            )
        })
    }
}

pub fn register(r: &mut Registry) {
    super::engine::register::<MySql>(
        r,
        "MySQL server from Ubuntu's archive (excludes MariaDB; not available on Debian)",
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn plans() {
        let (install, remove) =
            super::super::engine::snapshot_plans::<super::MySql>("ubuntu 24.04");
        insta::assert_snapshot!("mysql_install", install);
        insta::assert_snapshot!("mysql_remove", remove);
    }
}
