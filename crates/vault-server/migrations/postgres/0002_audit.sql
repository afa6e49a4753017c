-- The audit trail: column for column the SQLite one (migrations/sqlite/0002_audit.sql), with
-- PostgreSQL's own types (BYTEA for hashes). One hash-chained row per audited action, appended
-- in the same transaction as the action it describes.

CREATE TABLE audit_events (
    -- The position in the chain, from 1 with no gaps; part of the hashed encoding, so rows
    -- cannot be reordered or renumbered without breaking the chain.
    seq             BIGINT PRIMARY KEY NOT NULL CHECK (seq >= 1),
    id              TEXT COLLATE "C" NOT NULL UNIQUE,
    occurred_at     BIGINT NOT NULL,
    request_id      TEXT NOT NULL,
    actor_type      TEXT NOT NULL,
    actor_id        TEXT COLLATE "C" NOT NULL,
    action          TEXT COLLATE "C" NOT NULL,
    resource_type   TEXT NOT NULL,
    resource_id     TEXT COLLATE "C" NOT NULL,
    -- The vault the resource belongs to, if any: what vault owners may read.
    vault_id        TEXT COLLATE "C",
    outcome         TEXT NOT NULL,
    -- A JSON object of public facts (HTTP status, version number, key id); never a value,
    -- client share, key or token.
    detail          TEXT NOT NULL,
    -- SHA-256 chain: `event_hash` of the previous row (32 zero bytes for the first).
    prev_hash       BYTEA NOT NULL CHECK (octet_length(prev_hash) = 32),
    event_hash      BYTEA NOT NULL CHECK (octet_length(event_hash) = 32),
    -- HMAC-SHA256 under the audit key over the same canonical encoding.
    integrity_hash  BYTEA NOT NULL CHECK (octet_length(integrity_hash) = 32)
);
CREATE INDEX audit_events_by_time ON audit_events (occurred_at, seq);
CREATE INDEX audit_events_by_resource ON audit_events (resource_id, seq);
CREATE INDEX audit_events_by_vault ON audit_events (vault_id, seq);
CREATE INDEX audit_events_by_actor ON audit_events (actor_id, seq);

-- The chain head, one row. Every append updates it first in its transaction
-- (`UPDATE … RETURNING`), which takes the row lock until commit: appends from every connection
-- of every replica are serialized, and each sees the previous append's committed hash (under
-- READ COMMITTED the blocked UPDATE re-reads the row once the lock holder commits).
CREATE TABLE audit_chain_head (
    id          INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq         BIGINT NOT NULL CHECK (seq >= 0),
    event_hash  BYTEA NOT NULL CHECK (octet_length(event_hash) = 32)
);
INSERT INTO audit_chain_head (id, seq, event_hash)
    VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);

-- Ed25519-signed statements "the chain had `seq` events and its head hash was `event_hash`".
CREATE TABLE audit_checkpoints (
    seq         BIGINT PRIMARY KEY NOT NULL,
    event_id    TEXT NOT NULL,
    event_hash  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    key_id      TEXT NOT NULL,
    signature   BYTEA NOT NULL
);
