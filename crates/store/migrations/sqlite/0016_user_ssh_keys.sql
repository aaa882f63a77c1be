-- Personal SSH public keys of users, and where BrokeForge put them (server and Unix user).
CREATE TABLE user_ssh_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, fingerprint)
);

-- No foreign key to the key: a deployment outlives its key until the removal job took it off the server.
CREATE TABLE server_user_keys (
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    key_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    unix_user TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (server_id, key_id, unix_user)
);
CREATE INDEX server_user_keys_user ON server_user_keys (user_id);
