-- Runs on Postgres and on SQLite: only types and syntax both understand.
-- One row per failed login, with subject 'account:<normalised email>' and 'source:<address>'.
CREATE TABLE login_failures (
    subject TEXT NOT NULL,
    at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_failures_key_at_idx ON login_failures (subject, at);
CREATE INDEX login_failures_at_idx ON login_failures (at);
