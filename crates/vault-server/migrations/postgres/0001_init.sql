-- The first PostgreSQL schema: column for column the SQLite one (migrations/sqlite/0001_init.sql),
-- with PostgreSQL's own types. Timestamps are unix milliseconds (BIGINT) and ids are UUID text, as
-- there; flags are BOOLEAN and bytes BYTEA.
--
-- Text that the server sorts or compares by prefix (ids, paths, owners) uses the "C" collation, so
-- listings come out in byte order whatever the database's locale: the same order SQLite gives,
-- which the differential test between the two stores checks.

-- API keys are stored as SHA-256 hashes of the full key; the key itself is shown once.
CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    name        TEXT NOT NULL,
    key_hash    BYTEA NOT NULL UNIQUE,
    key_prefix  TEXT NOT NULL,
    -- JSON array of the vault ids the key may use; NULL for every vault of its user.
    vault_scope TEXT,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE vaults (
    id             TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    created_by     TEXT COLLATE "C" NOT NULL,
    created_at     BIGINT NOT NULL,
    cmek_enabled   BOOLEAN NOT NULL DEFAULT FALSE,
    -- The custody mode's canonical string; NULL until a mode is set (then standard custody).
    mpc_custody    TEXT,
    mpc_threshold  BIGINT CHECK (mpc_threshold BETWEEN 1 AND 255),
    -- JSON array of the provider names the mode's slots use.
    mpc_providers  TEXT,
    deleted_at     BIGINT
);
CREATE INDEX vaults_by_owner ON vaults (created_by, created_at);

CREATE TABLE secrets (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    vault_id    TEXT COLLATE "C" NOT NULL REFERENCES vaults (id),
    path        TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (vault_id, path)
);

CREATE TABLE secret_versions (
    id                TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    secret_id         TEXT COLLATE "C" NOT NULL REFERENCES secrets (id),
    -- Gap-free per secret: writers take MAX + 1 and this constraint turns a race into a
    -- conflict that the writer retries, on any replica.
    version           BIGINT NOT NULL CHECK (version >= 1),
    secret_type       TEXT NOT NULL,
    -- The canonical custody mode string the version was sealed under (its context).
    custody_mode      TEXT NOT NULL,
    -- The envelope (ciphertext, nonce, key commitment) as custody-policy hands it out.
    envelope          BYTEA NOT NULL,
    metadata          TEXT NOT NULL,
    expires_at        BIGINT,
    max_access_count  BIGINT CHECK (max_access_count >= 0),
    access_count      BIGINT NOT NULL DEFAULT 0 CHECK (access_count >= 0),
    disabled          BOOLEAN NOT NULL DEFAULT FALSE,
    deleted           BOOLEAN NOT NULL DEFAULT FALSE,
    created_by        TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    UNIQUE (secret_id, version)
);

-- One row per provider slot of a version: the wrapped share, or a pending slot to repair.
CREATE TABLE secret_dek_shares (
    vault_id           TEXT COLLATE "C" NOT NULL,
    secret_version_id  TEXT COLLATE "C" NOT NULL REFERENCES secret_versions (id),
    slot               BIGINT NOT NULL CHECK (slot BETWEEN 1 AND 255),
    provider           TEXT NOT NULL,
    blob               BYTEA,
    state              TEXT NOT NULL,
    PRIMARY KEY (secret_version_id, slot)
);
