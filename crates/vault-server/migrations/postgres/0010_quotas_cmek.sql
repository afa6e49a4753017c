-- Tiers and CMEK (issue 7, part B): the PostgreSQL twin of migrations/sqlite/0010_quotas_cmek.sql,
-- plus the lock rows that make quota checks race-free across replicas.

-- Quota checks count live vaults and live secrets inside the write that would exceed them;
-- these indexes keep those counts cheap.
CREATE INDEX vaults_live ON vaults (deleted_at);
CREATE INDEX secret_versions_by_secret_live ON secret_versions (secret_id, deleted);

-- CMEK: the SHA-256 (lowercase hex) of the client's key while the layer is on; NULL when off.
-- `vaults.cmek_enabled` stays the API flag and is TRUE exactly when this is set.
ALTER TABLE vaults ADD COLUMN cmek_fingerprint TEXT;

-- The fingerprint of the client key a CMEK value was encrypted with (NULL: not a CMEK value).
-- Rotation rewrites a version's envelope, shares and this column in one transaction, so each
-- version always names the one key its value opens with.
ALTER TABLE secret_versions ADD COLUMN cmek_fingerprint TEXT;
CREATE INDEX secret_versions_by_cmek ON secret_versions (cmek_fingerprint);

-- One row per counted resource. SQLite serialises every write behind its database lock, so a
-- count followed by an insert cannot race there; PostgreSQL runs writers of several replicas
-- at once under READ COMMITTED, where two transactions could both count `limit - 1` and both
-- insert. A limited write therefore first takes `SELECT … FOR UPDATE` on its resource's row:
-- writers of that resource queue on the row lock, and the count statement that follows takes a
-- fresh snapshot, so it sees every write committed by the transaction that held the lock before.
-- The rows are never updated; only their lock is used. A resource without a row here cannot be
-- limited (the write fails instead of going unchecked).
CREATE TABLE quota_locks (
    resource TEXT COLLATE "C" PRIMARY KEY NOT NULL
);
INSERT INTO quota_locks (resource) VALUES ('vaults'), ('secrets'), ('agents');
