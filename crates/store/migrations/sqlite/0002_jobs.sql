ALTER TABLE server_credentials ADD COLUMN username TEXT;

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    server_id INTEGER REFERENCES servers(id) ON DELETE CASCADE,
    payload TEXT NOT NULL DEFAULT '{}',
    target_type TEXT,
    target_name TEXT,
    target_service_type TEXT,
    provision_type TEXT,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    run_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    updated_at INTEGER NOT NULL
);
-- The database itself guarantees at most one running job per server (apt and dpkg hold global locks).
CREATE UNIQUE INDEX jobs_one_running_per_server ON jobs (server_id) WHERE status = 'running';
CREATE INDEX jobs_queued ON jobs (status, run_at, id);
CREATE INDEX jobs_server ON jobs (server_id, id);
