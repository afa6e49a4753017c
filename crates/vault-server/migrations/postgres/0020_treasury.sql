-- Treasury wallets: column for column the SQLite schema (migrations/sqlite/0020_treasury.sql).
-- The chain keys are secrets of the caller's `__treasury-keys` system vault; this table holds
-- only public metadata. The private key is the secret at `secret_path`, version
-- `secret_version`, sealed under the vault's custody like any other secret.

CREATE TABLE treasury_wallets (
    id              TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL,
    vault_id        TEXT COLLATE "C" NOT NULL REFERENCES vaults (id),
    chain           TEXT COLLATE "C" NOT NULL,
    curve           TEXT NOT NULL,
    public_key_hex  TEXT NOT NULL,
    address         TEXT NOT NULL,
    is_active       BOOLEAN NOT NULL,
    secret_path     TEXT COLLATE "C" NOT NULL,
    secret_version  BIGINT NOT NULL CHECK (secret_version >= 1),
    created_at      BIGINT NOT NULL,
    deactivated_at  BIGINT
);
-- At most one active wallet per user and chain: a concurrent second generate waits for the
-- first to commit, then fails here.
CREATE UNIQUE INDEX treasury_wallets_active ON treasury_wallets (user_id, chain) WHERE is_active;
CREATE INDEX treasury_wallets_by_user ON treasury_wallets (user_id, created_at);
