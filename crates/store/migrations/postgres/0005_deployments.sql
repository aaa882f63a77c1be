-- One deployment (or rollback) of a site: its release, commit, who triggered it, and how it ended.
-- The log itself is the job's command log (command_logs.job_id).
CREATE TABLE site_deployments (
    id BIGSERIAL PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES server_sites(id) ON DELETE CASCADE,
    job_id BIGINT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    branch TEXT,
    commit_hash TEXT,
    release_name TEXT,
    triggered_by TEXT NOT NULL,
    exit_code BIGINT,
    error TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX site_deployments_site ON site_deployments (site_id, id);
