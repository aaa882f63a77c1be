-- Generated service passwords (database admins, Redis), sealed with the master key.
CREATE TABLE service_secrets (
    server_id BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value_enc BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (server_id, name)
);
