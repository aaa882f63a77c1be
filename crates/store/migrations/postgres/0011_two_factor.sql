-- Two-factor sign-in (TOTP, RFC 6238): the confirmed secret and one being set up (both sealed with the
-- master key), the last time step a code was accepted for (each code works once), and single-use recovery
-- codes (their SHA-256 only).
ALTER TABLE users ADD COLUMN totp_secret_enc BYTEA;
ALTER TABLE users ADD COLUMN totp_pending_enc BYTEA;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;
CREATE TABLE recovery_codes (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at BIGINT
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);
