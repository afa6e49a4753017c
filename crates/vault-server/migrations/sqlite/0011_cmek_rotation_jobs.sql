-- CMEK rotation jobs. Keys are never stored: only the two fingerprints and the progress.
CREATE TABLE cmek_rotation_jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    vault_id         TEXT NOT NULL REFERENCES vaults (id),
    old_fingerprint  TEXT NOT NULL,
    new_fingerprint  TEXT NOT NULL,
    -- running | paused (keys lost in a restart) | completed | failed
    status           TEXT NOT NULL,
    processed        BIGINT NOT NULL DEFAULT 0,
    total            BIGINT NOT NULL,
    error            TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- At most one unfinished job per vault.
CREATE UNIQUE INDEX cmek_rotation_jobs_one_active
    ON cmek_rotation_jobs (vault_id) WHERE status IN ('running', 'paused', 'failed');
