//! Redis (`RedisInstaller`, `RedisRemover`) with a generated password.

use brokeforge_core::Secret;
use serde_json::json;

use super::engine::{DatabaseInstaller, DatabaseRemover, Engine, EngineInput, EngineSpec};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan};
use crate::templates::{self, Template};

pub static REDIS_CONF: Template = Template {
    name: "redis/redis.conf",
    source: include_str!("redis.conf.j2"),
};

pub struct Redis;
pub type RedisInstaller = DatabaseInstaller<Redis>;
pub type RedisRemover = DatabaseRemover<Redis>;

impl EngineSpec for Redis {
    const ENGINE: Engine = Engine::Redis;
    const INSTALLER_JOB: &'static str = "redis_installer";
    const REMOVER_JOB: &'static str = "redis_remover";

    fn configure(plan: Plan, input: &EngineInput) -> Result<Plan, PackageError> {
        let opened = !input.sources.is_empty();
        let conf = templates::render(
            &REDIS_CONF,
            json!({"bind": if opened { "0.0.0.0 ::" } else { "127.0.0.1 -::1" }, "password": input.password.expose()}),
        )?;
        // The file holds the password: it travels as a secret.
        Ok(plan.put_file(
            FileStep::new(
                "/etc/redis/redis.conf",
                FileContents::Secret(Secret::new(conf)),
                0o640,
            )
            .owner("redis:redis"),
        ))
    }
}

pub fn register(r: &mut Registry) {
    r.template(&REDIS_CONF);
    super::engine::register::<Redis>(r, "Redis with a generated password");
}

#[cfg(test)]
mod tests {
    #[test]
    fn plans() {
        let (install, remove) = super::super::engine::snapshot_plans::<super::Redis>("debian 12");
        insta::assert_snapshot!("redis_install", install);
        insta::assert_snapshot!("redis_remove", remove);
    }
}
