-- The audit log: who (a user, with how they came in, or a webhook or a schedule), from where, when, what
-- (the action, its target with ids, the server it concerns) and how it ended. Never a secret; only added to
-- and pruned by retention, never edited.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    user_id INTEGER,
    actor TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    server_id INTEGER,
    status INTEGER NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_user ON audit_log (user_id, id);
CREATE INDEX audit_log_server ON audit_log (server_id, id);
