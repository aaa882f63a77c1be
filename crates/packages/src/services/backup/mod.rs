//! Backups with restic: a plan dumps a database schema into its own encrypted repository on a storage
//! (S3-compatible, SFTP or a directory on the server), keeps what its retention says, restores a snapshot
//! into the same or a new schema, and proves a snapshot restores (a drill into a scratch schema).
//! What they share is in `repository`; the helper the jobs run on the server is `backup.sh`.

pub mod download;
pub mod repository;
pub mod source;
pub mod storage;

crate::packages![run, restore, verify, check];
