-- Request logs: one row per request. Times are milliseconds since the Unix epoch so that both
-- engines compare and sort them as plain integers.
CREATE TABLE logs (
    id                 TEXT PRIMARY KEY NOT NULL,
    started_at         INTEGER NOT NULL,
    front_door         TEXT NOT NULL,
    endpoint           TEXT NOT NULL,
    provider           TEXT,
    model              TEXT,
    served_model       TEXT,
    fallback_index     INTEGER NOT NULL,
    key_name           TEXT,
    virtual_key        TEXT,
    status             TEXT NOT NULL,
    status_code        INTEGER NOT NULL,
    error_type         TEXT,
    error_message      TEXT,
    latency_ms         REAL NOT NULL,
    first_byte_ms      REAL,
    overhead_ms        REAL NOT NULL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost               REAL,
    stop_reason        TEXT,
    stream             INTEGER NOT NULL,
    pass_through       INTEGER NOT NULL,
    attempts           INTEGER NOT NULL,
    is_async           INTEGER NOT NULL,
    -- The request body and the answer (a stream collected into its document), as text.
    input              TEXT,
    output             TEXT,
    content_truncated  INTEGER NOT NULL
);

-- Listing is newest first, usually within a time range; pruning deletes by age.
CREATE INDEX logs_started_at ON logs (started_at);
CREATE INDEX logs_virtual_key ON logs (virtual_key, started_at);

-- Async jobs: pending under an owner's lease, then completed or failed until expires_at.
CREATE TABLE async_jobs (
    id           TEXT PRIMARY KEY NOT NULL,
    owner        TEXT NOT NULL,
    virtual_key  TEXT,
    model        TEXT,
    request_id   TEXT NOT NULL,
    state        TEXT NOT NULL,
    ttl_ms       INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    lease_until  INTEGER NOT NULL,
    completed_at INTEGER,
    expires_at   INTEGER,
    status       INTEGER,
    body         BLOB
);

CREATE INDEX async_jobs_lease ON async_jobs (state, lease_until);
CREATE INDEX async_jobs_expires_at ON async_jobs (expires_at);
