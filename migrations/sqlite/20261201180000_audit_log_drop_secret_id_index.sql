-- The single-column audit-log index on secret_id (sqlite). Never edit once applied.
-- index_secrets_audit_log_secret_action (secret_id, action, seq) starts with
-- the same column, so it serves every lookup by secret_id; the single one
-- only cost a random index page per audit row, and every audited read
-- writes one (about one WAL page in five of an audited get on SQLite).
DROP INDEX index_secrets_audit_log_secret_id;
