-- Request logs: one row per request. Times are milliseconds since the Unix epoch so that both
-- engines compare and sort them as plain integers.
CREATE TABLE logs (
    id                 TEXT PRIMARY KEY NOT NULL,
    started_at         BIGINT NOT NULL,
    front_door         TEXT NOT NULL,
    endpoint           TEXT NOT NULL,
    provider           TEXT,
    model              TEXT,
    served_model       TEXT,
    fallback_index     BIGINT NOT NULL,
    key_name           TEXT,
    virtual_key        TEXT,
    status             TEXT NOT NULL,
    status_code        BIGINT NOT NULL,
    error_type         TEXT,
    error_message      TEXT,
    latency_ms         DOUBLE PRECISION NOT NULL,
    first_byte_ms      DOUBLE PRECISION,
    overhead_ms        DOUBLE PRECISION NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost               DOUBLE PRECISION,
    stop_reason        TEXT,
    stream             BOOLEAN NOT NULL,
    pass_through       BOOLEAN NOT NULL,
    attempts           BIGINT NOT NULL,
    is_async           BOOLEAN NOT NULL,
    -- The request body and the answer (a stream collected into its document), as text.
    input              TEXT,
    output             TEXT,
    content_truncated  BOOLEAN NOT NULL
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
    ttl_ms       BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    lease_until  BIGINT NOT NULL,
    completed_at BIGINT,
    expires_at   BIGINT,
    status       BIGINT,
    body         BYTEA
);

CREATE INDEX async_jobs_lease ON async_jobs (state, lease_until);
CREATE INDEX async_jobs_expires_at ON async_jobs (expires_at);
