-- One deployment (or rollback) of a site: its release, commit, who triggered it, and how it ended.
-- The log itself is the job's command log (command_logs.job_id).
CREATE TABLE site_deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES server_sites(id) ON DELETE CASCADE,
    job_id INTEGER,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    branch TEXT,
    commit_hash TEXT,
    release_name TEXT,
    triggered_by TEXT NOT NULL,
    exit_code INTEGER,
    error TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX site_deployments_site ON site_deployments (site_id, id);
