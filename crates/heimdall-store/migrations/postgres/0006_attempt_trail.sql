-- The attempt trail of a request: the upstream attempts that failed (one a retry, another key
-- or the next model of the fallback chain followed, or one that ended the request), in order,
-- as a JSON array of objects (provider, model, key_name, status, error_type, error_message,
-- elapsed_ms). NULL when no attempt failed, as for most requests.
ALTER TABLE logs ADD COLUMN attempt_trail TEXT;
