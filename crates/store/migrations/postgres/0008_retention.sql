-- The steps the one-line script reported (events without a job) are read on every server page: an index
-- that holds only them, so a busy server's many job events are never walked for them.
CREATE INDEX provision_events_script ON provision_events (server_id, id) WHERE job_id IS NULL;

-- A job's box shows each milestone's latest event: with the milestone in the job index, that is read from
-- the index alone, however many events a long-retried job has.
DROP INDEX provision_events_job;
CREATE INDEX provision_events_job ON provision_events (job_id, milestone, id);
