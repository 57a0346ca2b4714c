-- Audit-log indexes of the web UI's secret page (postgres). Never edit once applied.
-- "Used by": a resource's last successful injection (MAX(occurred_at) per
-- resource, src/store/ui_queries.rs last_injections) read from the index
-- alone instead of scanning the whole log.
CREATE INDEX index_secrets_audit_log_resource_action ON secrets_audit_log (resource, action, outcome, workspace, occurred_at);
-- A secret's history: its rows of the listed actions, newest first
-- (search_audit with secret_id and actions), without reading every
-- metadata read of that secret.
CREATE INDEX index_secrets_audit_log_secret_action ON secrets_audit_log (secret_id, action, seq);
