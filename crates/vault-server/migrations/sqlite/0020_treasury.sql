-- Treasury wallets: chain keys kept as secrets of the caller's `__treasury-keys` system vault.
-- This table holds only public metadata; the private key is the secret at `secret_path`,
-- version `secret_version`, sealed under the vault's custody like any other secret.

CREATE TABLE treasury_wallets (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL,
    vault_id        TEXT NOT NULL REFERENCES vaults (id),
    chain           TEXT NOT NULL,
    curve           TEXT NOT NULL,
    public_key_hex  TEXT NOT NULL,
    address         TEXT NOT NULL,
    is_active       INTEGER NOT NULL,
    secret_path     TEXT NOT NULL,
    secret_version  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    deactivated_at  BIGINT
);
-- At most one active wallet per user and chain: a concurrent second generate fails here.
CREATE UNIQUE INDEX treasury_wallets_active ON treasury_wallets (user_id, chain) WHERE is_active = 1;
CREATE INDEX treasury_wallets_by_user ON treasury_wallets (user_id, created_at);
