-- One row per event: the unique event_id is what makes redelivered events harmless.
CREATE TABLE notifications (
    id           UUID PRIMARY KEY,
    event_id     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    message      TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ,
    attempts     INTEGER NOT NULL
);
CREATE UNIQUE INDEX notifications_event_id_key ON notifications (event_id);
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at);
