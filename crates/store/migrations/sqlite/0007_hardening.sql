-- Pruning old sign-in attempts by age, and per-job reads of events (job pages, recovery).
CREATE INDEX login_attempts_created ON login_attempts (created_at);
CREATE INDEX provision_events_job ON provision_events (job_id, id);

-- Deploy webhook deliveries already acted on: a replayed delivery does nothing.
CREATE TABLE webhook_deliveries (
    site_id BIGINT NOT NULL,
    delivery_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (site_id, delivery_id)
);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

-- A site's configuration changes under a revision check, so concurrent edits never drop each other's fields.
ALTER TABLE server_sites ADD COLUMN config_revision BIGINT NOT NULL DEFAULT 0;
