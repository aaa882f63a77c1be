CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    public_ip TEXT NOT NULL,
    ssh_port INTEGER NOT NULL,
    os TEXT,
    provision_status TEXT NOT NULL,
    connection_status TEXT NOT NULL,
    host_key_fingerprint TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE server_credentials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    credential TEXT NOT NULL,
    public_key TEXT NOT NULL,
    private_key_enc BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (server_id, credential)
);

CREATE TABLE server_services (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    service_name TEXT NOT NULL,
    service_type TEXT NOT NULL,
    configuration TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (server_id, service_name)
);

CREATE TABLE server_sites (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    document_root TEXT NOT NULL,
    php_version TEXT,
    status TEXT NOT NULL,
    configuration TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (server_id, domain)
);

CREATE TABLE provision_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    job_id INTEGER,
    service_type TEXT NOT NULL,
    provision_type TEXT NOT NULL,
    milestone TEXT NOT NULL,
    label TEXT NOT NULL,
    current_step INTEGER NOT NULL,
    total_steps INTEGER NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX provision_events_server ON provision_events (server_id, id);

CREATE TABLE command_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    job_id INTEGER,
    event_id INTEGER,
    stream TEXT NOT NULL,
    chunk TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX command_logs_server ON command_logs (server_id, id);

CREATE TABLE site_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES server_sites(id) ON DELETE CASCADE,
    command TEXT NOT NULL,
    output TEXT NOT NULL,
    error_output TEXT NOT NULL,
    exit_code INTEGER,
    ran_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    success INTEGER NOT NULL,
    timed_out INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX site_commands_site ON site_commands (site_id, id);

CREATE TABLE store_meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
