-- Monitoring: the collector on each server (its ingest token, hashed), the samples it pushes, notification
-- channels (per team, their secrets sealed), alert rules (per server) and the delivery log.
CREATE TABLE monitoring_agents (
    server_id INTEGER PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    interval_secs INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER
);

-- Keyed by series and time (no row id on SQLite: the key is the table), so a sample costs one entry plus
-- one in the time index that pruning and rollups walk.
CREATE TABLE metric_samples (
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    at INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (server_id, metric, at)
) WITHOUT ROWID;
CREATE INDEX metric_samples_at ON metric_samples (at);

-- Rollups of the samples: min/avg/max per 10 minutes (resolution 600) and per hour (3600), kept longer than
-- the raw samples; `metric_rollup_progress` says up to when each resolution is done.
CREATE TABLE metric_rollups (
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    resolution INTEGER NOT NULL,
    at INTEGER NOT NULL,
    min_value REAL NOT NULL,
    avg_value REAL NOT NULL,
    max_value REAL NOT NULL,
    samples INTEGER NOT NULL,
    PRIMARY KEY (server_id, metric, resolution, at)
);
CREATE INDEX metric_rollups_at ON metric_rollups (resolution, at);

CREATE TABLE metric_rollup_progress (
    resolution INTEGER PRIMARY KEY,
    done_until INTEGER NOT NULL
);

CREATE TABLE notification_channels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    secret_enc BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (team_id, name)
);

CREATE TABLE alert_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    metric TEXT,
    comparison TEXT,
    threshold REAL,
    for_secs INTEGER NOT NULL,
    channel_id INTEGER REFERENCES notification_channels(id) ON DELETE SET NULL,
    state TEXT NOT NULL,
    pending_since INTEGER,
    state_since INTEGER NOT NULL,
    last_value REAL,
    detail TEXT,
    last_notified_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX alert_rules_server ON alert_rules (server_id);

CREATE TABLE notification_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id INTEGER NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
    rule_id INTEGER,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX notification_deliveries_channel ON notification_deliveries (channel_id, id);
-- Housekeeping prunes the log by age.
CREATE INDEX notification_deliveries_created ON notification_deliveries (created_at);

-- HTTP checks of sites, run by BrokeForge; their results go into metric_samples (http_up:DOMAIN, http_ms:DOMAIN).
CREATE TABLE site_checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL UNIQUE REFERENCES server_sites(id) ON DELETE CASCADE,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    expect_status INTEGER NOT NULL,
    interval_secs INTEGER NOT NULL,
    timeout_secs INTEGER NOT NULL,
    -- After each deploy: off | fail (the deployment fails when the check does) | rollback (and goes back).
    after_deploy TEXT NOT NULL DEFAULT 'off',
    state TEXT NOT NULL,
    next_check_at INTEGER NOT NULL,
    last_checked_at INTEGER,
    last_status INTEGER,
    last_ms INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX site_checks_due ON site_checks (next_check_at);
