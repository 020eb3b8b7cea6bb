-- Runs on Postgres and on SQLite: only types and syntax both understand.
-- When the password last changed (NULL: not since sign-up). Access tokens issued before it are
-- refused, and auth ends refresh token families that started before it.
ALTER TABLE users ADD COLUMN password_changed_at TIMESTAMPTZ;
