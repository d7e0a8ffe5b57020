-- The semantic cache's entries (the `semantic_cache` plugin), kept in the logs store's
-- database so that they survive a restart; each instance rebuilds its in-memory index from them.
-- Times are milliseconds since the Unix epoch.
CREATE TABLE cache_entries (
    id         TEXT PRIMARY KEY NOT NULL,
    cache_key  TEXT NOT NULL,
    -- Hex SHA-256 of the normalised request, and of its scope (everything but the messages).
    direct     TEXT NOT NULL,
    scope      TEXT NOT NULL,
    -- The unit vector as little-endian f32s; NULL in direct-only mode.
    vector     BLOB,
    stream     BOOLEAN NOT NULL,
    body       BLOB NOT NULL,
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX cache_entries_key ON cache_entries (cache_key);
CREATE INDEX cache_entries_expiry ON cache_entries (expires_at);
