//! The storage trait's guarantees: one suite, run against SQLite and against PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;

use vault_server::{
    ApiKeyRecord, NewVersion, PostgresStorage, ShareRecord, SqliteStorage, Storage, StorageError,
    VaultCustodyRecord, VaultRecord, VersionRecord,
};

use crate::pg::PgCluster;

fn vault(id: &str) -> VaultRecord {
    VaultRecord {
        id: id.into(),
        name: "v".into(),
        description: String::new(),
        created_by: "admin".into(),
        created_at: 1,
        cmek_enabled: false,
        custody: None,
    }
}

fn version_at(
    vault_id: &str,
    path: &str,
    n: u64,
    tag: &str,
    shares: Vec<ShareRecord>,
) -> NewVersion {
    NewVersion {
        new_secret_id: format!("secret-{vault_id}-{path}-{tag}"),
        version: VersionRecord {
            secret_id: String::new(),
            version_id: format!("version-{vault_id}-{path}-{n}-{tag}"),
            vault_id: vault_id.into(),
            path: path.into(),
            version: n,
            secret_type: "generic".into(),
            custody_mode: "2of3_multi_hsm".into(),
            envelope: vec![1, 2, 3],
            metadata: "{}".into(),
            expires_at: None,
            max_access_count: Some(1),
            access_count: 0,
            disabled: false,
            deleted: false,
            created_by: "admin".into(),
            created_at: 2,
        },
        shares,
    }
}

fn version(n: u64, shares: Vec<ShareRecord>) -> NewVersion {
    let mut v = version_at("vault-1", "db/password", n, "", shares);
    v.new_secret_id = format!("secret-{n}");
    v.version.version_id = format!("version-{n}");
    v
}

fn share(slot: u8) -> ShareRecord {
    ShareRecord {
        slot,
        provider: "gcp".into(),
        blob: Some(vec![slot; 4]),
    }
}

fn key(id: &str, hash: u8) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        user_id: "admin".into(),
        name: "k".into(),
        key_hash: vec![hash; 32],
        key_prefix: "1ck_abcdefgh".into(),
        vault_scope: Some(vec!["vault-1".into()]),
        created_at: 5,
        revoked_at: None,
    }
}

/// Every check, in order, on one empty store.
async fn suite(storage: Arc<dyn Storage>) {
    storage.insert_vault(&vault("vault-1")).await.unwrap();
    a_version_is_written_with_all_its_shares_or_not_at_all(&*storage).await;
    access_counting_never_exceeds_the_maximum(&storage).await;
    the_first_api_key_is_created_exactly_once(&storage).await;
    api_keys_round_trip_and_revoke_once(&*storage).await;
    custody_is_set_once(&*storage).await;
    concurrent_writers_get_gap_free_versions(&storage).await;
    listings_are_in_byte_order_and_prefixes_are_literal(&*storage).await;
    disable_and_delete(&*storage).await;
    storage.close().await;
}

#[tokio::test]
async fn storage_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path()).await.unwrap();
    suite(Arc::new(storage)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_on_postgres() {
    let cluster = PgCluster::start();
    let storage = PostgresStorage::connect(&cluster.database("suite").await)
        .await
        .unwrap();
    suite(Arc::new(storage)).await;
}

async fn a_version_is_written_with_all_its_shares_or_not_at_all(storage: &dyn Storage) {
    // The second share repeats slot 1: its insert fails inside the transaction, so neither the
    // version nor the first share may remain.
    let broken = version(1, vec![share(1), share(1)]);
    assert!(storage.put_version(&broken).await.is_err());
    assert_eq!(
        storage
            .latest_version_number("vault-1", "db/password")
            .await
            .unwrap(),
        None
    );
    assert!(
        storage
            .get_version("vault-1", "db/password", Some(1))
            .await
            .unwrap()
            .is_none()
    );

    let good = version(
        1,
        vec![
            share(1),
            share(2),
            ShareRecord {
                slot: 3,
                provider: "azure".into(),
                blob: None,
            },
        ],
    );
    let stored = storage.put_version(&good).await.unwrap();
    assert_eq!(stored.version, 1);
    let (read, shares) = storage
        .get_version("vault-1", "db/password", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, stored);
    assert_eq!(read.envelope, vec![1, 2, 3]);
    assert_eq!(shares.len(), 3);
    assert_eq!(shares[0], share(1));
    assert_eq!(shares[2].blob, None);

    // The same version number again is a conflict (a concurrent PUT won), not an overwrite.
    let mut again = version(1, vec![share(1)]);
    again.version.version_id = "version-1b".into();
    assert!(matches!(
        storage.put_version(&again).await,
        Err(StorageError::Conflict)
    ));
}

async fn access_counting_never_exceeds_the_maximum(storage: &Arc<dyn Storage>) {
    // max_access_count is 1: of many concurrent reads exactly one is counted.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let storage = Arc::clone(storage);
        tasks.push(tokio::spawn(async move {
            storage.record_access("version-1").await.unwrap()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        granted += usize::from(task.await.unwrap());
    }
    assert_eq!(granted, 1);
    let (read, _) = storage
        .get_version("vault-1", "db/password", Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.access_count, 1);
}

async fn the_first_api_key_is_created_exactly_once(storage: &Arc<dyn Storage>) {
    assert_eq!(storage.api_key_count().await.unwrap(), 0);
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let storage = Arc::clone(storage);
        tasks.push(tokio::spawn(async move {
            storage
                .insert_first_api_key(&key(&format!("first-{i}"), i))
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += usize::from(task.await.unwrap());
    }
    assert_eq!(created, 1);
    assert_eq!(storage.api_key_count().await.unwrap(), 1);
    assert!(
        !storage
            .insert_first_api_key(&key("late", 99))
            .await
            .unwrap()
    );
}

async fn api_keys_round_trip_and_revoke_once(storage: &dyn Storage) {
    let k = key("k2", 200);
    storage.insert_api_key(&k).await.unwrap();
    assert_eq!(
        storage.find_api_key_by_hash(&[200; 32]).await.unwrap(),
        Some(k.clone())
    );
    assert_eq!(storage.get_api_key("k2").await.unwrap(), Some(k));
    // The same hash twice is refused by the store.
    assert!(storage.insert_api_key(&key("k3", 200)).await.is_err());
    assert_eq!(storage.list_api_keys("admin").await.unwrap().len(), 2);
    assert!(storage.revoke_api_key("admin", "k2", 9).await.unwrap());
    assert!(!storage.revoke_api_key("admin", "k2", 10).await.unwrap());
    assert!(!storage.revoke_api_key("someone", "k2", 10).await.unwrap());
    assert_eq!(
        storage.get_api_key("k2").await.unwrap().unwrap().revoked_at,
        Some(9)
    );
}

async fn custody_is_set_once(storage: &dyn Storage) {
    storage.insert_vault(&vault("vault-c")).await.unwrap();
    let custody = VaultCustodyRecord {
        mode: "2of3_multi_hsm".into(),
        threshold: 2,
        providers: vec!["gcp".into(), "aws".into(), "azure".into()],
    };
    assert!(
        storage
            .set_vault_custody("vault-c", &custody)
            .await
            .unwrap()
    );
    let other = VaultCustodyRecord {
        mode: "standard".into(),
        threshold: 1,
        providers: vec![],
    };
    assert!(!storage.set_vault_custody("vault-c", &other).await.unwrap());
    let read = storage.get_vault("vault-c").await.unwrap().unwrap();
    assert_eq!(read.custody, Some(custody));
    assert!(storage.delete_vault("vault-c", 3).await.unwrap());
    assert!(!storage.delete_vault("vault-c", 4).await.unwrap());
    assert!(storage.get_vault("vault-c").await.unwrap().is_none());
    let listed: Vec<String> = storage
        .list_vaults("admin")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(listed, ["vault-1"]);
}

/// Writers that each take `latest + 1` and retry on [`StorageError::Conflict`], as the server
/// does, end with versions 1..=N, every one written once.
async fn concurrent_writers_get_gap_free_versions(storage: &Arc<dyn Storage>) {
    const WRITERS: usize = 6;
    const EACH: usize = 5;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let storage = Arc::clone(storage);
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0usize;
            for i in 0..EACH {
                loop {
                    let next = storage
                        .latest_version_number("vault-1", "race")
                        .await
                        .unwrap()
                        .unwrap_or(0)
                        + 1;
                    let new = version_at(
                        "vault-1",
                        "race",
                        next,
                        &format!("w{w}i{i}"),
                        vec![share(1)],
                    );
                    match storage.put_version(&new).await {
                        Ok(stored) => {
                            assert_eq!(stored.version, next);
                            break;
                        }
                        Err(StorageError::Conflict) => conflicts += 1,
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let versions = storage.list_versions("vault-1", "race").await.unwrap();
    let numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
    let expected: Vec<u64> = (1..=(WRITERS * EACH) as u64).collect();
    assert_eq!(numbers, expected);
    // One secret row for all of them, whoever created it.
    let secret_ids: BTreeSet<&str> = versions.iter().map(|v| v.secret_id.as_str()).collect();
    assert_eq!(secret_ids.len(), 1);
}

async fn listings_are_in_byte_order_and_prefixes_are_literal(storage: &dyn Storage) {
    storage.insert_vault(&vault("vault-l")).await.unwrap();
    // Byte order puts upper case before lower case and `_` between them; a locale-aware
    // collation would not. `%` and `_` in a prefix must match themselves only.
    for path in ["b", "a_x", "aBc", "Zed", "a%y", "ab", "é"] {
        storage
            .put_version(&version_at("vault-l", path, 1, "", vec![share(1)]))
            .await
            .unwrap();
    }
    let all: Vec<String> = storage
        .list_secrets("vault-l", "")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.path)
        .collect();
    assert_eq!(all, ["Zed", "a%y", "aBc", "a_x", "ab", "b", "é"]);
    let underscore: Vec<String> = storage
        .list_secrets("vault-l", "a_")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.path)
        .collect();
    assert_eq!(underscore, ["a_x"]);
    let percent: Vec<String> = storage
        .list_secrets("vault-l", "a%")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.path)
        .collect();
    assert_eq!(percent, ["a%y"]);
}

async fn disable_and_delete(storage: &dyn Storage) {
    let (v1, _) = storage
        .get_version("vault-l", "b", Some(1))
        .await
        .unwrap()
        .unwrap();
    assert!(storage.disable_version(&v1.version_id).await.unwrap());
    let (read, _) = storage
        .get_version("vault-l", "b", None)
        .await
        .unwrap()
        .unwrap();
    assert!(read.disabled);
    assert!(storage.delete_secret("vault-l", "b").await.unwrap());
    assert!(!storage.delete_secret("vault-l", "b").await.unwrap());
    assert!(!storage.disable_version(&v1.version_id).await.unwrap());
    let listed: Vec<String> = storage
        .list_secrets("vault-l", "b")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.path)
        .collect();
    assert!(listed.is_empty());
    // Deleted versions still count for numbering, so a new write never reuses a number.
    assert_eq!(
        storage.latest_version_number("vault-l", "b").await.unwrap(),
        Some(1)
    );
}
