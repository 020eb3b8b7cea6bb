-- Runs on Postgres and on SQLite: only types and syntax both understand.
CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,
    name          TEXT NOT NULL,
    surname       TEXT NOT NULL,
    phone         TEXT,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_name_idx ON users (name);
CREATE INDEX users_surname_idx ON users (surname);
CREATE INDEX users_created_at_idx ON users (created_at, id);
