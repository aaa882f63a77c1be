-- BrokeForge's own scheduled backup (at most one row): a sealed copy of its database and master key, put by
-- restic into a repository on one of the backup storages. Its passphrase is a panel secret (store_meta).
CREATE TABLE self_backup (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    storage_id INTEGER NOT NULL REFERENCES backup_storages(id),
    schedule TEXT NOT NULL,
    keep_last INTEGER NOT NULL,
    next_run_at INTEGER NOT NULL,
    last_run_at INTEGER,
    last_ok INTEGER,
    last_message TEXT,
    updated_at INTEGER NOT NULL
);
