-- The first schema of the embedded store. Timestamps are unix milliseconds (BIGINT), booleans
-- are 0/1 integers and ids are UUID text, so the PostgreSQL schema can mirror this one column
-- for column and the server's queries stay portable.

-- API keys are stored as SHA-256 hashes of the full key; the key itself is shown once.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    key_hash    BLOB NOT NULL UNIQUE,
    key_prefix  TEXT NOT NULL,
    -- JSON array of the vault ids the key may use; NULL for every vault of its user.
    vault_scope TEXT,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE vaults (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    cmek_enabled   INTEGER NOT NULL DEFAULT 0,
    -- The custody mode's canonical string; NULL until a mode is set (then standard custody).
    mpc_custody    TEXT,
    mpc_threshold  INTEGER,
    -- JSON array of the provider names the mode's slots use.
    mpc_providers  TEXT,
    deleted_at     BIGINT
);
CREATE INDEX vaults_by_owner ON vaults (created_by, created_at);

CREATE TABLE secrets (
    id          TEXT PRIMARY KEY NOT NULL,
    vault_id    TEXT NOT NULL REFERENCES vaults (id),
    path        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (vault_id, path)
);

CREATE TABLE secret_versions (
    id                TEXT PRIMARY KEY NOT NULL,
    secret_id         TEXT NOT NULL REFERENCES secrets (id),
    version           BIGINT NOT NULL,
    secret_type       TEXT NOT NULL,
    -- The canonical custody mode string the version was sealed under (its context).
    custody_mode      TEXT NOT NULL,
    -- The envelope (ciphertext, nonce, key commitment) as custody-policy hands it out.
    envelope          BLOB NOT NULL,
    metadata          TEXT NOT NULL,
    expires_at        BIGINT,
    max_access_count  BIGINT,
    access_count      BIGINT NOT NULL DEFAULT 0,
    disabled          INTEGER NOT NULL DEFAULT 0,
    deleted           INTEGER NOT NULL DEFAULT 0,
    created_by        TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    UNIQUE (secret_id, version)
);

-- One row per provider slot of a version: the wrapped share, or a pending slot to repair.
CREATE TABLE secret_dek_shares (
    vault_id           TEXT NOT NULL,
    secret_version_id  TEXT NOT NULL REFERENCES secret_versions (id),
    slot               INTEGER NOT NULL,
    provider           TEXT NOT NULL,
    blob               BLOB,
    state              TEXT NOT NULL,
    PRIMARY KEY (secret_version_id, slot)
);
