//! A read-through cache for the rows every request reads first (its API key, its vault), in
//! front of the SQLite store only.
//!
//! Why it is safe there: one server process owns a SQLite data directory, and every write goes
//! through that process's store, which drops the cache whenever it changes an API key or a
//! vault, before the write is answered. A revoked key or a deleted vault is therefore refused
//! from the next request on, as without the cache. (The PostgreSQL store has no cache: another
//! replica may change a row at any time.)
//!
//! The race a read-through cache must not lose: a lookup reads the old row, a write changes it
//! and drops the cache, then the lookup stores the old row. Each drop bumps a generation under
//! the same lock; a lookup notes the generation before it reads the database and stores its
//! row only if no drop happened since.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{ApiKeyRecord, VaultRecord};

/// Entries kept per table before the cache starts over: enough for every key and vault of a
/// large organisation, small enough (a few MiB) to never matter.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Default)]
struct Tables {
    generation: u64,
    /// Live (unrevoked) API keys by the SHA-256 of their text.
    keys_by_hash: HashMap<Vec<u8>, ApiKeyRecord>,
    /// Vaults that are not deleted, by id.
    vaults: HashMap<String, VaultRecord>,
}

/// The cache; clones share it.
#[derive(Clone, Default)]
pub(crate) struct ReadCache {
    tables: Arc<Mutex<Tables>>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Sizes only: the rows (key hashes, vault settings) have no business in a log line
        // that formats the store.
        let tables = self.lock();
        f.debug_struct("ReadCache")
            .field("generation", &tables.generation)
            .field("keys", &tables.keys_by_hash.len())
            .field("vaults", &tables.vaults.len())
            .finish()
    }
}

/// The generation a lookup saw before reading the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl ReadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // The maps hold no invariant a panic could break halfway (each change is one insert
        // or one clear), so a poisoned lock is still usable.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached live key with this hash, or the ticket to store one after reading it.
    pub(crate) fn key(&self, hash: &[u8]) -> Result<ApiKeyRecord, Ticket> {
        let tables = self.lock();
        tables
            .keys_by_hash
            .get(hash)
            .cloned()
            .ok_or(Ticket(tables.generation))
    }

    /// Stores `key`, read from the database after `ticket` was taken, unless the cache was
    /// dropped since. Revoked keys are not stored.
    pub(crate) fn store_key(&self, ticket: Ticket, key: &ApiKeyRecord) {
        if key.revoked_at.is_some() {
            return;
        }
        let mut tables = self.lock();
        if tables.generation != ticket.0 {
            return;
        }
        if tables.keys_by_hash.len() >= MAX_ENTRIES {
            tables.keys_by_hash.clear();
        }
        tables
            .keys_by_hash
            .insert(key.key_hash.clone(), key.clone());
    }

    /// The cached live vault with this id, or the ticket to store one after reading it.
    pub(crate) fn vault(&self, id: &str) -> Result<VaultRecord, Ticket> {
        let tables = self.lock();
        tables
            .vaults
            .get(id)
            .cloned()
            .ok_or(Ticket(tables.generation))
    }

    /// Stores `vault`, read from the database after `ticket` was taken, unless the cache was
    /// dropped since. Only live vaults are read (`get_vault` skips deleted ones).
    pub(crate) fn store_vault(&self, ticket: Ticket, vault: &VaultRecord) {
        let mut tables = self.lock();
        if tables.generation != ticket.0 {
            return;
        }
        if tables.vaults.len() >= MAX_ENTRIES {
            tables.vaults.clear();
        }
        tables.vaults.insert(vault.id.clone(), vault.clone());
    }

    /// Drops everything: called after every write that changes an API key or a vault, before
    /// that write is answered, whether it succeeded or not.
    pub(crate) fn drop_all(&self) {
        let mut tables = self.lock();
        tables.generation = tables.generation.wrapping_add(1);
        tables.keys_by_hash.clear();
        tables.vaults.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hash: u8) -> ApiKeyRecord {
        ApiKeyRecord {
            id: format!("key-{hash}"),
            user_id: "u".into(),
            name: "k".into(),
            key_hash: vec![hash; 32],
            key_prefix: "1ck_".into(),
            vault_scope: None,
            created_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn a_lookup_that_raced_a_write_does_not_store_its_stale_row() {
        let cache = ReadCache::default();
        let Err(ticket) = cache.key(&[1; 32]) else {
            panic!("empty cache hit")
        };
        // A revoke commits and drops the cache while the lookup is reading the old row.
        cache.drop_all();
        cache.store_key(ticket, &key(1));
        assert!(cache.key(&[1; 32]).is_err(), "the stale row was cached");
        // A lookup after the drop stores normally.
        let Err(ticket) = cache.key(&[1; 32]) else {
            panic!()
        };
        cache.store_key(ticket, &key(1));
        assert_eq!(cache.key(&[1; 32]).ok(), Some(key(1)));
        cache.drop_all();
        assert!(cache.key(&[1; 32]).is_err());
    }

    #[test]
    fn debug_shows_sizes_not_rows() {
        let cache = ReadCache::default();
        let Err(ticket) = cache.key(&[7; 32]) else {
            panic!()
        };
        cache.store_key(ticket, &key(7));
        let shown = format!("{cache:?}");
        assert!(shown.contains("keys: 1"), "{shown}");
        assert!(
            !shown.contains("key-7") && !shown.contains("7, 7"),
            "{shown}"
        );
    }

    #[test]
    fn revoked_keys_are_never_stored_and_the_size_is_bounded() {
        let cache = ReadCache::default();
        let mut revoked = key(2);
        revoked.revoked_at = Some(1);
        let Err(ticket) = cache.key(&[2; 32]) else {
            panic!()
        };
        cache.store_key(ticket, &revoked);
        assert!(cache.key(&[2; 32]).is_err());
        for i in 0..=MAX_ENTRIES {
            let mut k = key(0);
            k.key_hash = (i as u64).to_le_bytes().to_vec();
            let Err(ticket) = cache.key(&k.key_hash) else {
                panic!()
            };
            cache.store_key(ticket, &k);
        }
        assert!(cache.lock().keys_by_hash.len() <= MAX_ENTRIES);
    }
}
