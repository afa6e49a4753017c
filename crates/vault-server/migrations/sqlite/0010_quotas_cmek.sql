-- Tiers and CMEK (issue 7, part B).

-- Quota checks count live vaults and live secrets inside the insert statement that would
-- exceed them; these indexes keep those counts cheap.
CREATE INDEX vaults_live ON vaults (deleted_at);
CREATE INDEX secret_versions_by_secret_live ON secret_versions (secret_id, deleted);

-- CMEK: the SHA-256 (lowercase hex) of the client's key while the layer is on; NULL when off.
-- `vaults.cmek_enabled` stays the API flag and is 1 exactly when this is set.
ALTER TABLE vaults ADD COLUMN cmek_fingerprint TEXT;

-- The fingerprint of the client key a CMEK value was encrypted with (NULL: not a CMEK value).
-- Rotation rewrites a version's envelope, shares and this column in one transaction, so each
-- version always names the one key its value opens with.
ALTER TABLE secret_versions ADD COLUMN cmek_fingerprint TEXT;
CREATE INDEX secret_versions_by_cmek ON secret_versions (cmek_fingerprint);
