-- The steps the one-line script reported (events without a job) are read on every server page: an index
-- that holds only them, so a busy server's many job events are never walked for them.
CREATE INDEX provision_events_script ON provision_events (server_id, id) WHERE job_id IS NULL;
