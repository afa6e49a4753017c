-- The audit trail: one hash-chained row per audited action, appended in the same transaction as
-- the action it describes. Columns are portable (TEXT, BIGINT, BLOB ~ bytea) so the PostgreSQL
-- schema mirrors this one.

CREATE TABLE audit_events (
    -- The position in the chain, from 1 with no gaps; part of the hashed encoding, so rows
    -- cannot be reordered or renumbered without breaking the chain.
    seq             BIGINT PRIMARY KEY NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    occurred_at     BIGINT NOT NULL,
    request_id      TEXT NOT NULL,
    actor_type      TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    action          TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    -- The vault the resource belongs to, if any: what vault owners may read.
    vault_id        TEXT,
    outcome         TEXT NOT NULL,
    -- A JSON object of public facts (HTTP status, version number, key id); never a value,
    -- client share, key or token.
    detail          TEXT NOT NULL,
    -- SHA-256 chain: `event_hash` of the previous row (32 zero bytes for the first).
    prev_hash       BLOB NOT NULL,
    event_hash      BLOB NOT NULL,
    -- HMAC-SHA256 under the audit key over the same canonical encoding.
    integrity_hash  BLOB NOT NULL
);
CREATE INDEX audit_events_by_time ON audit_events (occurred_at, seq);
CREATE INDEX audit_events_by_resource ON audit_events (resource_id, seq);
CREATE INDEX audit_events_by_vault ON audit_events (vault_id, seq);
CREATE INDEX audit_events_by_actor ON audit_events (actor_id, seq);

-- The chain head, one row. Every append updates it first in its transaction, which serializes
-- appends: SQLite takes the database write lock, PostgreSQL the row lock (the same
-- `UPDATE … RETURNING` statement; an explicit `SELECT … FOR UPDATE` would do as well).
CREATE TABLE audit_chain_head (
    id          INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq         BIGINT NOT NULL,
    event_hash  BLOB NOT NULL
);
INSERT INTO audit_chain_head (id, seq, event_hash)
    VALUES (1, 0, X'0000000000000000000000000000000000000000000000000000000000000000');

-- Ed25519-signed statements "the chain had `seq` events and its head hash was `event_hash`".
CREATE TABLE audit_checkpoints (
    seq         BIGINT PRIMARY KEY NOT NULL,
    event_id    TEXT NOT NULL,
    event_hash  BLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    key_id      TEXT NOT NULL,
    signature   BLOB NOT NULL
);
