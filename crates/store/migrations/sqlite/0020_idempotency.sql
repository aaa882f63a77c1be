-- Idempotency keys: a POST sent again with the same `Idempotency-Key` (a client's retry after a lost answer)
-- gets the first answer back instead of running twice. The answer is sealed like any secret (it may carry
-- one, such as a provisioning link); rows go after a day.
CREATE TABLE idempotency_keys (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    -- NULL while the first request runs.
    status INTEGER,
    body_enc BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
