-- Agents (non-human principals with their own `ocv_` keys) and per-vault access policies:
-- column for column the SQLite schema (migrations/sqlite/0003_agents_policies.sql).

CREATE TABLE agents (
    id                 TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name               TEXT NOT NULL,
    description        TEXT NOT NULL,
    -- The user that created the agent and manages it.
    created_by         TEXT COLLATE "C" NOT NULL,
    -- JSON array of the vaults the agent may ever reach; NULL for any (policies still decide).
    vault_ids          TEXT,
    expires_at         BIGINT,
    token_ttl_seconds  BIGINT CHECK (token_ttl_seconds >= 0),
    -- SHA-256 of the agent's key; the key is shown once.
    key_hash           BYTEA NOT NULL UNIQUE,
    key_prefix         TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    deleted_at         BIGINT
);
CREATE INDEX agents_by_owner ON agents (created_by, created_at);

CREATE TABLE policies (
    id                   TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    vault_id             TEXT COLLATE "C" NOT NULL REFERENCES vaults (id),
    secret_path_pattern  TEXT COLLATE "C" NOT NULL,
    principal_type       TEXT COLLATE "C" NOT NULL,
    principal_id         TEXT COLLATE "C" NOT NULL,
    -- JSON array of "read" / "write".
    permissions          TEXT NOT NULL,
    effect               TEXT NOT NULL,
    priority             BIGINT NOT NULL,
    expires_at           BIGINT,
    created_by           TEXT COLLATE "C" NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX policies_by_principal ON policies (vault_id, principal_type, principal_id);
