-- mlflow-secrets initial schema (SQLite). DESIGN §2. Never edit once applied.
CREATE TABLE secrets (
    secret_id       VARCHAR(36)  NOT NULL,
    workspace       VARCHAR(63)  NOT NULL DEFAULT 'default',
    secret_name     VARCHAR(255) NOT NULL,
    ciphertext      BLOB         NOT NULL,
    iv              BLOB         NOT NULL,
    wrapped_dek     BLOB         NOT NULL,
    kek_version     INTEGER      NOT NULL,
    aad_hash        VARCHAR(64)  NOT NULL,
    masked_value    VARCHAR(500) NOT NULL,
    is_shared       BOOLEAN      NOT NULL DEFAULT FALSE,
    state           VARCHAR(36)  NOT NULL DEFAULT 'ACTIVE',
    created_by      VARCHAR(255) NULL,
    last_updated_by VARCHAR(255) NULL,
    revoked_by      VARCHAR(255) NULL,
    created_at      BIGINT       NOT NULL,
    last_updated_at BIGINT       NOT NULL,
    revoked_at      BIGINT       NULL,
    CONSTRAINT secrets_pk PRIMARY KEY (secret_id),
    CONSTRAINT uq_secrets_workspace_secret_name UNIQUE (workspace, secret_name),
    CONSTRAINT ck_secrets_state CHECK (state IN ('ACTIVE', 'REVOKED'))
);
CREATE INDEX index_secrets_state ON secrets (state);
CREATE INDEX index_secrets_kek_version ON secrets (kek_version);

CREATE TABLE secrets_bindings (
    binding_id    VARCHAR(36)  NOT NULL,
    secret_id     VARCHAR(36)  NOT NULL,
    workspace     VARCHAR(63)  NOT NULL,
    resource_type VARCHAR(50)  NOT NULL,
    resource_id   VARCHAR(255) NOT NULL,
    binding_name  VARCHAR(255) NOT NULL,
    created_by    VARCHAR(255) NULL,
    created_at    BIGINT       NOT NULL,
    CONSTRAINT secrets_bindings_pk PRIMARY KEY (binding_id),
    CONSTRAINT fk_secrets_bindings_secret_id FOREIGN KEY (secret_id)
        REFERENCES secrets (secret_id) ON DELETE CASCADE,
    CONSTRAINT unique_binding_per_resource
        UNIQUE (workspace, resource_type, resource_id, binding_name)
);
CREATE INDEX index_secrets_bindings_resource ON secrets_bindings (workspace, resource_type, resource_id);
CREATE INDEX index_secrets_bindings_secret_id ON secrets_bindings (secret_id);

-- Append-only audit log. Each row's row_hash covers prev_hash, so editing or
-- deleting a row breaks the chain; secrets_audit_head holds the tail so that
-- truncating the end is detected too.
CREATE TABLE secrets_audit_log (
    seq         BIGINT        NOT NULL,
    occurred_at BIGINT        NOT NULL,
    principal   VARCHAR(255)  NULL,
    action      VARCHAR(32)   NOT NULL,
    workspace   VARCHAR(63)   NULL,
    secret_id   VARCHAR(36)   NULL,
    secret_name VARCHAR(255)  NULL,
    resource    VARCHAR(400)  NULL,
    outcome     VARCHAR(16)   NOT NULL,
    detail      VARCHAR(2000) NULL,
    prev_hash   VARCHAR(64)   NOT NULL,
    row_hash    VARCHAR(64)   NOT NULL,
    CONSTRAINT secrets_audit_log_pk PRIMARY KEY (seq)
);
CREATE INDEX index_secrets_audit_log_secret_id ON secrets_audit_log (secret_id);
CREATE INDEX index_secrets_audit_log_occurred_at ON secrets_audit_log (occurred_at);

CREATE TABLE secrets_audit_head (
    id        INTEGER     NOT NULL,
    seq       BIGINT      NOT NULL,
    last_hash VARCHAR(64) NOT NULL,
    CONSTRAINT secrets_audit_head_pk PRIMARY KEY (id)
);
INSERT INTO secrets_audit_head (id, seq, last_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER trg_secrets_audit_log_no_update BEFORE UPDATE ON secrets_audit_log
BEGIN
    SELECT RAISE(ABORT, 'secrets_audit_log is append-only');
END;
CREATE TRIGGER trg_secrets_audit_log_no_delete BEFORE DELETE ON secrets_audit_log
BEGIN
    SELECT RAISE(ABORT, 'secrets_audit_log is append-only');
END;
