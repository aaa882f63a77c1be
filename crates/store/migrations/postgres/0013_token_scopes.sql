-- API tokens with a scope (read: safe requests only; deploy: also deployments, rollbacks and site commands;
-- full: everything the user may do) and an optional expiry.
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'full';
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
