-- Who may act on other users: 'user' (only themself) or 'admin' (everyone).
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user';
