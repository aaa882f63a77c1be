-- Drift: items of a server the user manages by hand (a drift check reports them but repair leaves them
-- alone). The reports themselves are the results of the servers' drift-check jobs.
CREATE TABLE drift_by_hand (
    server_id BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    item TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (server_id, item)
);
