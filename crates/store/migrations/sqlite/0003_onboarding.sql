-- One-time provisioning tokens: only a hash is stored; the script can be fetched once, callbacks are accepted
-- until the onboarding finishes or the token expires.
CREATE TABLE server_provision_tokens (
    server_id INTEGER PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    script_served_at INTEGER,
    finished_at INTEGER,
    created_at INTEGER NOT NULL
);
