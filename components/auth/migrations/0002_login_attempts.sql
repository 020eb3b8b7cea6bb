-- Runs on Postgres and on SQLite: only types and syntax both understand.
-- A login attempt records its rows before its password is checked (so parallel guesses see
-- each other) under one attempt id, and takes them back if it was refused or succeeded.
-- Rows from before this migration have no attempt id and count as failures as before.
ALTER TABLE login_failures ADD COLUMN attempt TEXT;
CREATE INDEX login_failures_attempt_idx ON login_failures (attempt);
