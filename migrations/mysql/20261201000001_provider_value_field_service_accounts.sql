-- DESIGN §2 added columns (mysql). Never edit once applied.
-- The LLM provider of a credential (openai, anthropic, azure, ...).
ALTER TABLE secrets ADD COLUMN provider VARCHAR(64) NULL;
-- For an object value: the one field a binding injects.
ALTER TABLE secrets_bindings ADD COLUMN value_field VARCHAR(255) NULL;
-- Comma-separated Kubernetes ServiceAccount names allowed to receive the binding.
ALTER TABLE secrets_bindings ADD COLUMN service_accounts VARCHAR(1000) NULL;
