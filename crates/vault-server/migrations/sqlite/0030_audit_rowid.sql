-- Cheaper audit appends (every read appends an audit event, so every request pays for one):
-- `seq BIGINT PRIMARY KEY` is not a rowid alias in SQLite (only `INTEGER PRIMARY KEY` is), so
-- each event was stored twice, in the table keyed by a hidden rowid and in a separate index on
-- `seq`. As `INTEGER PRIMARY KEY` the table itself is keyed by `seq`: one B-tree fewer per
-- append. (New event ids are time-ordered UUIDs, so the unique index on `id` grows at its end.)
-- Same columns in the same order, same constraints otherwise; the rows are copied as they are.

CREATE TABLE audit_events_rowid (
    seq             INTEGER PRIMARY KEY NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    occurred_at     BIGINT NOT NULL,
    request_id      TEXT NOT NULL,
    actor_type      TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    action          TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    vault_id        TEXT,
    outcome         TEXT NOT NULL,
    detail          TEXT NOT NULL,
    prev_hash       BLOB NOT NULL,
    event_hash      BLOB NOT NULL,
    integrity_hash  BLOB NOT NULL
);
INSERT INTO audit_events_rowid
    SELECT seq, id, occurred_at, request_id, actor_type, actor_id, action, resource_type,
           resource_id, vault_id, outcome, detail, prev_hash, event_hash, integrity_hash
    FROM audit_events ORDER BY seq;
DROP TABLE audit_events;
ALTER TABLE audit_events_rowid RENAME TO audit_events;
CREATE INDEX audit_events_by_time ON audit_events (occurred_at, seq);
CREATE INDEX audit_events_by_resource ON audit_events (resource_id, seq);
CREATE INDEX audit_events_by_vault ON audit_events (vault_id, seq);
CREATE INDEX audit_events_by_actor ON audit_events (actor_id, seq);
