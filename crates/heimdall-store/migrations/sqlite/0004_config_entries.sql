-- The config store's providers and client settings, edited through the admin API.
--
-- One row per provider (`kind` 'provider', `name` its name under `providers`) and per client
-- setting (`kind` 'client', `name` the field under `client`). `body` is the JSON document in
-- config.json's layout, NULL when the admin API deleted what config.json declares (so the
-- file does not bring it back). `file_body` is config.json's version of the entry when it was
-- last taken, NULL when the file has none: a file change is told from an unchanged file by
-- comparing with it, so that a reload takes what the file changed and keeps the admin API's
-- edits of everything else.
CREATE TABLE config_entries (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT,
    file_body  TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);

-- Bumped by every change of the entries: instances sharing the store poll it to take each
-- other's admin changes.
CREATE TABLE config_revision (
    id       INTEGER PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO config_revision (id, revision) VALUES (1, 0);
