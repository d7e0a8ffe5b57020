-- The config store's encryption at rest (`encryption_key`), one row written by the first
-- instance started with a key. `salt` (base64) is what the key is derived with, kept here so
-- that every instance sharing the store derives the same key from the same passphrase;
-- `key_check` is a known text sealed with that key, so a wrong key is told at start. No row:
-- nothing in the store is encrypted.
CREATE TABLE config_encryption (
    id        INTEGER PRIMARY KEY,
    salt      TEXT NOT NULL,
    key_check TEXT NOT NULL
);
