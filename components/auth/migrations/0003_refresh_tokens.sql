-- Runs on Postgres and on SQLite: only types and syntax both understand.
-- One row per refresh token. A login starts a family; each refresh spends its token (used_at)
-- and adds the next one to the family. Revoking a family sets revoked_at on all its rows.
-- Only the SHA-256 of a token's secret is kept.
CREATE TABLE refresh_tokens (
    id                TEXT PRIMARY KEY,
    family            TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    secret_hash       TEXT NOT NULL,
    family_started_at TIMESTAMPTZ NOT NULL,
    issued_at         TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    used_at           TIMESTAMPTZ,
    revoked_at        TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires_at_idx ON refresh_tokens (expires_at);
