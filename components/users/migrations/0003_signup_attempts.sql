-- Runs on Postgres and on SQLite: only types and syntax both understand.
-- One row per sign-up attempt from a client address, for the per-source sign-up throttle;
-- refused attempts take their row back.
CREATE TABLE signup_attempts (
    source  TEXT NOT NULL,
    at      TIMESTAMPTZ NOT NULL,
    attempt TEXT NOT NULL
);
CREATE INDEX signup_attempts_source_at_idx ON signup_attempts (source, at);
CREATE INDEX signup_attempts_at_idx ON signup_attempts (at);
