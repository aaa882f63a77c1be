//! The spec's `Services/Database/*`: MariaDB, MySQL, PostgreSQL and Redis (one folder each, sharing the
//! engine plan in `engine`), and schemas and users on the SQL engines (sharing the SQL in `sql`).

pub mod engine;
pub mod shared;
pub mod sql;

crate::packages![mariadb, mysql, postgresql, redis, schema, user];
