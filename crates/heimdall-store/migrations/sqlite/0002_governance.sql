-- The config store's governance tables. One migration set serves both stores, so that a
-- single database may hold logs and config alike; each store uses its own tables.

-- Virtual keys, teams, customers, budgets and rate limits, each as its JSON document (the
-- shape of config.json and of the admin API), so that a new field needs no migration.
CREATE TABLE governance_entities (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- Bumped by every change of the entities: instances sharing the store poll it to reload.
CREATE TABLE governance_revision (
    id       INTEGER PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO governance_revision (id, revision) VALUES (1, 0);

-- What was spent per counter, saved by an instance that counts in memory so that a restart
-- does not forgive it (with Redis, the counters live there instead).
CREATE TABLE governance_counters (
    key          TEXT PRIMARY KEY NOT NULL,
    window_start BIGINT NOT NULL,
    used         REAL NOT NULL,
    updated_at   BIGINT NOT NULL
);
