-- Where backups go: S3-compatible object storage, SFTP, or a directory on one of the user's servers.
-- The access secret (S3 secret key, SFTP private key) is sealed with the master key.
CREATE TABLE backup_storages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    configuration TEXT NOT NULL,
    secret_enc BLOB,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

-- What a server backs up, where, when and for how long. Each plan is its own restic repository with a
-- generated password (sealed). A storage in use by a plan cannot be deleted.
CREATE TABLE backup_plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    storage_id INTEGER NOT NULL REFERENCES backup_storages(id),
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    schedule TEXT,
    verify_schedule TEXT,
    retention TEXT NOT NULL,
    password_enc BLOB NOT NULL,
    next_run_at INTEGER,
    next_verify_at INTEGER,
    last_verify TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (server_id, name)
);
CREATE INDEX backup_plans_due ON backup_plans (next_run_at);
CREATE INDEX backup_plans_verify_due ON backup_plans (next_verify_at);

-- The snapshots a plan's repository holds, as its last run listed them (restic is the truth; this is what
-- pages show without a round trip).
CREATE TABLE backup_snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id INTEGER NOT NULL REFERENCES backup_plans(id) ON DELETE CASCADE,
    snapshot_id TEXT NOT NULL,
    job_id INTEGER,
    size_bytes INTEGER,
    duration_ms INTEGER,
    taken_at INTEGER NOT NULL,
    UNIQUE (plan_id, snapshot_id)
);
