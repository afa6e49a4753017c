//! The storage trait's guarantees: one suite, run against SQLite and against PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::Digest as _;
use tokio::sync::Barrier;
use vault_server::{
    AgentRecord, ApiKeyRecord, AuditError, AuditKey, AuditQuery, Checkpoint, CmekJobRecord,
    CmekJobStatus, GENESIS_HASH, NewAuditEvent, NewVersion, PolicyRecord, PostgresStorage,
    ShareRecord, SqliteStorage, Storage, StorageError, VaultCustodyRecord, VaultRecord,
    VersionRecord, WalletRecord, canonical_encoding,
};

use crate::pg::PgCluster;

/// The audit event every write carries; ids are unique across the whole test binary, as the
/// store requires.
fn event(action: &str) -> NewAuditEvent {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    NewAuditEvent {
        id: format!("event-{n}"),
        occurred_at: 1_000 + i64::try_from(n).unwrap(),
        request_id: format!("request-{n}"),
        actor_type: "user".into(),
        actor_id: "admin".into(),
        action: action.into(),
        resource_type: "secret".into(),
        resource_id: "vault-1/db/password".into(),
        vault_id: Some("vault-1".into()),
        outcome: "success".into(),
        detail: "{}".into(),
    }
}

/// The chain head's `seq`: how many events the store holds.
async fn head(storage: &dyn Storage) -> u64 {
    storage.audit_head().await.unwrap().0
}

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
            cmek_fingerprint: None,
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

/// Every check, in order, on one empty store; `replica` is a second handle on the same store
/// (a second server replica on PostgreSQL, the same handle on SQLite).
async fn suite(storage: Arc<dyn Storage>, replica: Arc<dyn Storage>) {
    assert_eq!(storage.audit_head().await.unwrap(), (0, GENESIS_HASH));
    storage
        .insert_vault(&vault("vault-1"), &event("vault.create"))
        .await
        .unwrap();
    a_version_is_written_with_all_its_shares_or_not_at_all(&*storage).await;
    access_counting_never_exceeds_the_maximum(&storage).await;
    the_first_api_key_is_created_exactly_once(&storage).await;
    api_keys_round_trip_and_revoke_once(&*storage).await;
    custody_is_set_once(&*storage).await;
    concurrent_writers_get_gap_free_versions(&storage).await;
    listings_are_in_byte_order_and_prefixes_are_literal(&*storage).await;
    disable_and_delete(&*storage).await;
    agents_round_trip_and_delete_once(&*storage).await;
    policies_round_trip_update_and_delete_once(&*storage).await;
    treasury_wallets_rotate_and_delete_once(&storage).await;
    a_change_that_fails_records_no_event(&*storage).await;
    concurrent_appends_form_one_gap_free_chain(&storage).await;
    audit_queries_filter_count_and_page(&*storage).await;
    checkpoints_are_stored_once(&*storage).await;
    quotas_count_live_vaults_and_live_secrets(&*storage).await;
    concurrent_creates_at_the_limit_let_exactly_one_through(&storage, &replica).await;
    cmek_state_flags_writes_and_rotation_rewrites_in_place(&*storage).await;
    the_chain_links_every_event(&*storage).await;
    replica.close().await;
    storage.close().await;
}

#[tokio::test]
async fn storage_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(dir.path()).await.unwrap());
    // One SQLite store per data directory: the server never opens it twice.
    suite(Arc::clone(&storage), storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_on_postgres() {
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let audit_key = Arc::new(AuditKey::load_or_create(dir.path()).unwrap());
    let options = cluster.database("suite").await;
    let storage = PostgresStorage::connect(&options, Arc::clone(&audit_key))
        .await
        .unwrap();
    let replica = PostgresStorage::connect(&options, audit_key).await.unwrap();
    suite(Arc::new(storage), Arc::new(replica)).await;
}

async fn a_version_is_written_with_all_its_shares_or_not_at_all(storage: &dyn Storage) {
    // The second share repeats slot 1: its insert fails inside the transaction, so neither the
    // version nor the first share may remain.
    let broken = version(1, vec![share(1), share(1)]);
    let before = head(storage).await;
    assert!(
        storage
            .put_version(&broken, &event("secret.write"))
            .await
            .is_err()
    );
    // Nor its audit event: the append is in the rolled-back transaction.
    assert_eq!(head(storage).await, before);
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
    let stored = storage
        .put_version(&good, &event("secret.write"))
        .await
        .unwrap();
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
        storage.put_version(&again, &event("secret.write")).await,
        Err(StorageError::Conflict)
    ));
}

async fn access_counting_never_exceeds_the_maximum(storage: &Arc<dyn Storage>) {
    // max_access_count is 1: of many concurrent reads exactly one is counted.
    let before = head(&**storage).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let storage = Arc::clone(storage);
        tasks.push(tokio::spawn(async move {
            storage
                .record_access("version-1", &event("secret.read"))
                .await
                .unwrap()
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
    // Only the counted read committed its event.
    assert_eq!(head(&**storage).await, before + 1);
}

async fn the_first_api_key_is_created_exactly_once(storage: &Arc<dyn Storage>) {
    assert_eq!(storage.api_key_count().await.unwrap(), 0);
    let before = head(&**storage).await;
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let storage = Arc::clone(storage);
        tasks.push(tokio::spawn(async move {
            storage
                .insert_first_api_key(&key(&format!("first-{i}"), i), &event("key.create"))
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
    // The winner's event is recorded with its key, the losers' are not.
    assert_eq!(head(&**storage).await, before + 1);
    assert!(
        !storage
            .insert_first_api_key(&key("late", 99), &event("key.create"))
            .await
            .unwrap()
    );
}

async fn api_keys_round_trip_and_revoke_once(storage: &dyn Storage) {
    let k = key("k2", 200);
    storage
        .insert_api_key(&k, &event("key.create"))
        .await
        .unwrap();
    assert_eq!(
        storage.find_api_key_by_hash(&[200; 32]).await.unwrap(),
        Some(k.clone())
    );
    assert_eq!(storage.get_api_key("k2").await.unwrap(), Some(k));
    // The same hash twice is refused by the store.
    assert!(
        storage
            .insert_api_key(&key("k3", 200), &event("key.create"))
            .await
            .is_err()
    );
    assert_eq!(storage.list_api_keys("admin").await.unwrap().len(), 2);
    let revoke = event("key.revoke");
    assert!(
        storage
            .revoke_api_key("admin", "k2", 9, &revoke)
            .await
            .unwrap()
    );
    let before = head(storage).await;
    assert!(
        !storage
            .revoke_api_key("admin", "k2", 10, &event("key.revoke"))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .revoke_api_key("someone", "k2", 10, &event("key.revoke"))
            .await
            .unwrap()
    );
    // A change that did nothing records nothing.
    assert_eq!(head(storage).await, before);
    assert_eq!(
        storage.get_api_key("k2").await.unwrap().unwrap().revoked_at,
        Some(9)
    );
}

async fn custody_is_set_once(storage: &dyn Storage) {
    storage
        .insert_vault(&vault("vault-c"), &event("vault.create"))
        .await
        .unwrap();
    let custody = VaultCustodyRecord {
        mode: "2of3_multi_hsm".into(),
        threshold: 2,
        providers: vec!["gcp".into(), "aws".into(), "azure".into()],
    };
    assert!(
        storage
            .set_vault_custody("vault-c", &custody, &event("vault.custody"))
            .await
            .unwrap()
    );
    let other = VaultCustodyRecord {
        mode: "standard".into(),
        threshold: 1,
        providers: vec![],
    };
    assert!(
        !storage
            .set_vault_custody("vault-c", &other, &event("vault.custody"))
            .await
            .unwrap()
    );
    let read = storage.get_vault("vault-c").await.unwrap().unwrap();
    assert_eq!(read.custody, Some(custody));
    assert!(
        storage
            .delete_vault("vault-c", 3, &event("vault.delete"))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .delete_vault("vault-c", 4, &event("vault.delete"))
            .await
            .unwrap()
    );
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
                    match storage.put_version(&new, &event("secret.write")).await {
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
    storage
        .insert_vault(&vault("vault-l"), &event("vault.create"))
        .await
        .unwrap();
    // Byte order puts upper case before lower case and `_` between them; a locale-aware
    // collation would not. `%` and `_` in a prefix must match themselves only.
    for path in ["b", "a_x", "aBc", "Zed", "a%y", "ab", "é"] {
        storage
            .put_version(
                &version_at("vault-l", path, 1, "", vec![share(1)]),
                &event("secret.write"),
            )
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
    assert!(
        storage
            .disable_version(&v1.version_id, &event("secret.disable"))
            .await
            .unwrap()
    );
    let (read, _) = storage
        .get_version("vault-l", "b", None)
        .await
        .unwrap()
        .unwrap();
    assert!(read.disabled);
    assert!(
        storage
            .delete_secret("vault-l", "b", &event("secret.delete"))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .delete_secret("vault-l", "b", &event("secret.delete"))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .disable_version(&v1.version_id, &event("secret.disable"))
            .await
            .unwrap()
    );
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

fn agent(id: &str, hash: u8, owner: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        name: format!("agent {id}"),
        description: "deploys".into(),
        created_by: owner.into(),
        vault_ids: Some(vec!["vault-1".into(), "vault-l".into()]),
        expires_at: Some(9_000),
        token_ttl_seconds: Some(300),
        key_hash: vec![hash; 32],
        key_prefix: "ocv_abcdefgh".into(),
        created_at: 7,
        deleted_at: None,
    }
}

async fn agents_round_trip_and_delete_once(storage: &dyn Storage) {
    let a = agent("agent-1", 1, "admin");
    let mut b = agent("agent-2", 2, "admin");
    b.vault_ids = None;
    b.expires_at = None;
    b.token_ttl_seconds = None;
    b.created_at = 8;
    let other = agent("agent-3", 3, "someone");
    for record in [&a, &b, &other] {
        storage
            .insert_agent(record, &event("agent.create"))
            .await
            .unwrap();
    }
    // The same key hash twice is refused, and its event is not recorded.
    let before = head(storage).await;
    assert!(
        storage
            .insert_agent(&agent("agent-4", 1, "admin"), &event("agent.create"))
            .await
            .is_err()
    );
    assert_eq!(head(storage).await, before);

    assert_eq!(storage.get_agent("agent-1").await.unwrap(), Some(a.clone()));
    assert_eq!(storage.get_agent("agent-2").await.unwrap(), Some(b.clone()));
    assert_eq!(
        storage.find_agent_by_hash(&[1; 32]).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        storage.list_agents("admin").await.unwrap(),
        [a.clone(), b.clone()]
    );

    // Only its owner deletes it, once; a deleted agent is gone from reads and listings but its
    // hash still resolves (so its key is refused as deleted, not as unknown).
    assert!(
        !storage
            .delete_agent("someone", "agent-1", 20, &event("agent.delete"))
            .await
            .unwrap()
    );
    assert!(
        storage
            .delete_agent("admin", "agent-1", 20, &event("agent.delete"))
            .await
            .unwrap()
    );
    let before = head(storage).await;
    assert!(
        !storage
            .delete_agent("admin", "agent-1", 21, &event("agent.delete"))
            .await
            .unwrap()
    );
    assert_eq!(head(storage).await, before);
    assert_eq!(storage.get_agent("agent-1").await.unwrap(), None);
    assert_eq!(storage.list_agents("admin").await.unwrap(), [b]);
    let deleted = storage.find_agent_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(deleted.deleted_at, Some(20));
}

fn policy(id: &str, principal_id: &str, created_at: i64) -> PolicyRecord {
    PolicyRecord {
        id: id.into(),
        vault_id: "vault-1".into(),
        secret_path_pattern: "db/**".into(),
        principal_type: "agent".into(),
        principal_id: principal_id.into(),
        permissions: vec!["read".into()],
        effect: "allow".into(),
        priority: 0,
        expires_at: None,
        created_by: "admin".into(),
        created_at,
        updated_at: created_at,
    }
}

async fn policies_round_trip_update_and_delete_once(storage: &dyn Storage) {
    let p1 = policy("policy-1", "agent-2", 10);
    let p2 = policy("policy-2", "agent-2", 11);
    let p3 = policy("policy-3", "agent-9", 12);
    for record in [&p1, &p2, &p3] {
        storage
            .insert_policy(record, &event("policy.create"))
            .await
            .unwrap();
    }
    // A policy on a vault that does not exist is refused by the foreign key, with no event.
    let before = head(storage).await;
    let mut orphan = policy("policy-x", "agent-2", 13);
    orphan.vault_id = "no-such-vault".into();
    assert!(
        storage
            .insert_policy(&orphan, &event("policy.create"))
            .await
            .is_err()
    );
    assert_eq!(head(storage).await, before);

    assert_eq!(
        storage.get_policy("vault-1", "policy-1").await.unwrap(),
        Some(p1.clone())
    );
    // A policy is only found through its own vault.
    assert_eq!(
        storage.get_policy("vault-l", "policy-1").await.unwrap(),
        None
    );
    assert_eq!(
        storage.list_policies("vault-1").await.unwrap(),
        [p1.clone(), p2.clone(), p3.clone()]
    );
    assert_eq!(
        storage
            .principal_policies("vault-1", "agent", "agent-2")
            .await
            .unwrap(),
        [p1.clone(), p2.clone()]
    );
    assert!(
        storage
            .principal_policies("vault-1", "user", "agent-2")
            .await
            .unwrap()
            .is_empty()
    );

    // An update replaces the rule and keeps the identity and the creation.
    let mut updated = p2.clone();
    updated.secret_path_pattern = "app/*".into();
    updated.principal_type = "user".into();
    updated.principal_id = "bob".into();
    updated.permissions = vec!["read".into(), "write".into()];
    updated.effect = "deny".into();
    updated.priority = 7;
    updated.expires_at = Some(99_000);
    updated.updated_at = 30;
    assert!(
        storage
            .update_policy(&updated, &event("policy.update"))
            .await
            .unwrap()
    );
    assert_eq!(
        storage.get_policy("vault-1", "policy-2").await.unwrap(),
        Some(updated.clone())
    );
    assert_eq!(
        storage
            .principal_policies("vault-1", "user", "bob")
            .await
            .unwrap(),
        [updated.clone()]
    );
    // Updating or deleting through another vault, or a policy that does not exist, changes
    // nothing and records nothing.
    let before = head(storage).await;
    let mut elsewhere = updated.clone();
    elsewhere.vault_id = "vault-l".into();
    assert!(
        !storage
            .update_policy(&elsewhere, &event("policy.update"))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .delete_policy("vault-l", "policy-2", &event("policy.delete"))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .delete_policy("vault-1", "policy-missing", &event("policy.delete"))
            .await
            .unwrap()
    );
    assert_eq!(head(storage).await, before);
    assert!(
        storage
            .delete_policy("vault-1", "policy-2", &event("policy.delete"))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .delete_policy("vault-1", "policy-2", &event("policy.delete"))
            .await
            .unwrap()
    );
    assert_eq!(storage.list_policies("vault-1").await.unwrap(), [p1, p3]);
}

async fn a_change_that_fails_records_no_event(storage: &dyn Storage) {
    // An event id must be unique: an append that reuses one fails, and the change it was
    // written with is rolled back with it (fail-closed).
    let first = event("vault.create");
    storage
        .insert_vault(&vault("vault-f1"), &first)
        .await
        .unwrap();
    let before = storage.audit_head().await.unwrap();
    assert!(
        storage
            .insert_vault(&vault("vault-f2"), &first)
            .await
            .is_err()
    );
    assert_eq!(storage.get_vault("vault-f2").await.unwrap(), None);
    assert_eq!(storage.audit_head().await.unwrap(), before);
    // The chain goes on from where it was.
    let next = storage.append_audit(&event("secret.read")).await.unwrap();
    assert_eq!(next.seq, before.0 + 1);
    assert_eq!(next.prev_hash, before.1);
    assert_eq!(
        storage.audit_head().await.unwrap(),
        (next.seq, next.event_hash)
    );
}

/// Many concurrent writers of every kind: the chain ends exactly as long as the number of
/// successful changes, with no gap and no fork (checked link by link at the end of the suite).
async fn concurrent_appends_form_one_gap_free_chain(storage: &Arc<dyn Storage>) {
    const TASKS: u64 = 8;
    const EACH: u64 = 6;
    let before = head(&**storage).await;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let storage = Arc::clone(storage);
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                match i % 3 {
                    0 => {
                        storage.append_audit(&event("secret.read")).await.unwrap();
                    }
                    1 => storage
                        .insert_vault(&vault(&format!("vault-t{t}i{i}")), &event("vault.create"))
                        .await
                        .unwrap(),
                    _ => {
                        let new = version_at(
                            &format!("vault-t{t}i{}", i - 1),
                            "p",
                            1,
                            "",
                            vec![share(1)],
                        );
                        storage
                            .put_version(&new, &event("secret.write"))
                            .await
                            .unwrap();
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(head(&**storage).await, before + TASKS * EACH);
}

async fn audit_queries_filter_count_and_page(storage: &dyn Storage) {
    let total = head(storage).await;
    let all = AuditQuery {
        limit: 1_000,
        ..Default::default()
    };
    let (events, count) = storage.audit_events(&all).await.unwrap();
    assert_eq!(count, total);
    // Newest first.
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=total).rev().collect();
    assert_eq!(seqs, expected);

    // Filters: action, actor, resource (or vault), time window; a page with the full count.
    let mut marked = event("policy.evaluate");
    marked.actor_id = "carol".into();
    marked.resource_id = "policy-z".into();
    marked.vault_id = Some("vault-z".into());
    marked.occurred_at = 5_000_000;
    let sealed = storage.append_audit(&marked).await.unwrap();
    let by_action = AuditQuery {
        action: Some("policy.evaluate".into()),
        limit: 10,
        ..Default::default()
    };
    let (found, count) = storage.audit_events(&by_action).await.unwrap();
    assert_eq!(
        (found.as_slice(), count),
        (std::slice::from_ref(&sealed), 1)
    );
    for query in [
        AuditQuery {
            actor_id: Some("carol".into()),
            limit: 10,
            ..Default::default()
        },
        AuditQuery {
            resource_id: Some("policy-z".into()),
            limit: 10,
            ..Default::default()
        },
        AuditQuery {
            resource_id: Some("vault-z".into()),
            limit: 10,
            ..Default::default()
        },
        AuditQuery {
            from: Some(5_000_000),
            to: Some(5_000_000),
            limit: 10,
            ..Default::default()
        },
    ] {
        let (found, count) = storage.audit_events(&query).await.unwrap();
        assert_eq!(count, 1, "{query:?}");
        assert_eq!(found, std::slice::from_ref(&sealed), "{query:?}");
    }
    let (page, count) = storage
        .audit_events(&AuditQuery {
            action: Some("vault.create".into()),
            limit: 2,
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(count > 3);
    assert_eq!(page.len(), 2);
    assert!(page[0].seq > page[1].seq);
    assert!(page.iter().all(|e| e.event.action == "vault.create"));

    // A user sees the events they performed and those of the vaults they created.
    let mut by_bob = event("secret.read");
    by_bob.actor_id = "bob".into();
    by_bob.vault_id = Some("vault-c".into());
    let bobs = storage.append_audit(&by_bob).await.unwrap();
    let (visible, count) = storage
        .audit_events(&AuditQuery {
            visible_to: Some("bob".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((visible, count), (vec![bobs], 1));
    let (_, admin_sees) = storage
        .audit_events(&AuditQuery {
            visible_to: Some("admin".into()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(admin_sees, head(storage).await - 1, "all but carol's event");

    // The seq range of a time window.
    assert_eq!(
        storage
            .audit_seq_range(Some(5_000_000), Some(5_000_000))
            .await
            .unwrap(),
        Some((sealed.seq, sealed.seq))
    );
    assert_eq!(
        storage
            .audit_seq_range(Some(i64::MAX - 1), None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage.audit_seq_range(None, None).await.unwrap(),
        Some((1, head(storage).await))
    );
}

async fn checkpoints_are_stored_once(storage: &dyn Storage) {
    assert_eq!(storage.latest_checkpoint().await.unwrap(), None);
    let chain = storage.audit_chain(1, 3).await.unwrap();
    let checkpoints: Vec<Checkpoint> = chain
        .iter()
        .map(|e| Checkpoint {
            seq: e.seq,
            event_id: e.event.id.clone(),
            event_hash: e.event_hash,
            created_at: 50 + i64::try_from(e.seq).unwrap(),
            key_id: "0011223344556677".into(),
            signature: vec![u8::try_from(e.seq).unwrap(); 64],
        })
        .collect();
    for c in &checkpoints {
        assert!(storage.insert_checkpoint(c).await.unwrap());
    }
    // A second checkpoint of the same head (another replica's) is not stored.
    let mut again = checkpoints[1].clone();
    again.signature = vec![0xff; 64];
    assert!(!storage.insert_checkpoint(&again).await.unwrap());
    assert_eq!(
        storage.audit_checkpoints(2, 3).await.unwrap(),
        checkpoints[1..]
    );
    assert_eq!(storage.audit_checkpoints(1, 3).await.unwrap(), checkpoints);
    assert_eq!(
        storage.latest_checkpoint().await.unwrap().as_ref(),
        checkpoints.last()
    );
}

/// Reads the whole chain in pages and checks every link: seq 1..=head without a gap, each
/// `prev_hash` the previous `event_hash`, each `event_hash` the SHA-256 of the canonical
/// encoding, and the head row pointing at the last event.
async fn the_chain_links_every_event(storage: &dyn Storage) {
    let (head_seq, head_hash) = storage.audit_head().await.unwrap();
    let mut prev = GENESIS_HASH;
    let mut next = 1;
    loop {
        let page = storage.audit_chain(next, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        for e in page {
            assert_eq!(e.seq, next);
            assert_eq!(e.prev_hash, prev, "seq {next}");
            let encoding = canonical_encoding(e.seq, &e.prev_hash, &e.event).unwrap();
            let digest: [u8; 32] = sha2::Sha256::digest(&encoding).into();
            assert_eq!(e.event_hash, digest, "seq {next}");
            prev = e.event_hash;
            next += 1;
        }
    }
    assert_eq!(next - 1, head_seq);
    assert_eq!(prev, head_hash);
}

async fn live_counts(storage: &dyn Storage) -> (u64, u64) {
    let vaults = storage.list_vaults("admin").await.unwrap();
    let mut secrets = 0;
    for v in &vaults {
        secrets += storage.list_secrets(&v.id, "").await.unwrap().len() as u64;
    }
    (vaults.len() as u64, secrets)
}

fn limit_reached(result: Result<impl std::fmt::Debug, StorageError>, what: &str, at: u64) {
    match result {
        Err(StorageError::LimitReached { resource, limit }) => {
            assert_eq!((resource, limit), (what, at));
        }
        other => panic!("expected the {what} limit of {at}, got {other:?}"),
    }
}

async fn quotas_count_live_vaults_and_live_secrets(storage: &dyn Storage) {
    let (vaults, secrets) = live_counts(storage).await;
    // Vaults: the limit counts live vaults, so deleting one frees its place.
    let max = Some(vaults + 2);
    storage
        .insert_vault_within(&vault("vault-q"), max, &event("vault.create"))
        .await
        .unwrap();
    storage
        .insert_vault_within(&vault("vault-q2"), max, &event("vault.create"))
        .await
        .unwrap();
    // A refused write records no event.
    let before = head(storage).await;
    limit_reached(
        storage
            .insert_vault_within(&vault("vault-q3"), max, &event("vault.create"))
            .await,
        "vaults",
        vaults + 2,
    );
    assert!(storage.get_vault("vault-q3").await.unwrap().is_none());
    assert_eq!(head(storage).await, before);
    // Unlimited writes are never counted against anything.
    storage
        .insert_vault(&vault("vault-q4"), &event("vault.create"))
        .await
        .unwrap();
    assert!(
        storage
            .delete_vault("vault-q2", 7, &event("vault.delete"))
            .await
            .unwrap()
    );
    assert!(
        storage
            .delete_vault("vault-q4", 7, &event("vault.delete"))
            .await
            .unwrap()
    );
    storage
        .insert_vault_within(&vault("vault-q3"), max, &event("vault.create"))
        .await
        .unwrap();

    // Secrets: a new version of a live secret is not a new secret; a new path is.
    let max = Some(secrets + 1);
    let put = |path: &str, n: u64, tag: &str| version_at("vault-q", path, n, tag, vec![share(1)]);
    storage
        .put_version_within(&put("a", 1, ""), max, &event("secret.write"))
        .await
        .unwrap();
    storage
        .put_version_within(&put("a", 2, ""), max, &event("secret.write"))
        .await
        .unwrap();
    limit_reached(
        storage
            .put_version_within(&put("b", 1, ""), max, &event("secret.write"))
            .await,
        "secrets",
        secrets + 1,
    );
    assert_eq!(
        storage.latest_version_number("vault-q", "b").await.unwrap(),
        None
    );
    // Deleting `a` frees its place; writing `a` again would make it live again, so it counts.
    assert!(
        storage
            .delete_secret("vault-q", "a", &event("secret.delete"))
            .await
            .unwrap()
    );
    storage
        .put_version_within(&put("b", 1, ""), max, &event("secret.write"))
        .await
        .unwrap();
    limit_reached(
        storage
            .put_version_within(&put("a", 3, ""), max, &event("secret.write"))
            .await,
        "secrets",
        secrets + 1,
    );
    assert_eq!(
        storage.latest_version_number("vault-q", "a").await.unwrap(),
        Some(2)
    );
    // Secrets of a deleted vault are not live.
    storage
        .put_version(
            &version_at("vault-q3", "c", 1, "", vec![share(1)]),
            &event("secret.write"),
        )
        .await
        .unwrap();
    let max = Some(secrets + 2);
    limit_reached(
        storage
            .put_version_within(&put("d", 1, ""), max, &event("secret.write"))
            .await,
        "secrets",
        secrets + 2,
    );
    assert!(
        storage
            .delete_vault("vault-q3", 8, &event("vault.delete"))
            .await
            .unwrap()
    );
    storage
        .put_version_within(&put("d", 1, ""), max, &event("secret.write"))
        .await
        .unwrap();
    assert_eq!(live_counts(storage).await, (vaults + 1, secrets + 2));

    // Agents: the limit counts agents that are not deleted, so deleting one frees its place.
    let agents = live_agents(storage).await;
    let max = Some(agents + 1);
    storage
        .insert_agent_within(&agent("agent-q1", 41, "admin"), max, &event("agent.create"))
        .await
        .unwrap();
    let before = head(storage).await;
    limit_reached(
        storage
            .insert_agent_within(&agent("agent-q2", 42, "admin"), max, &event("agent.create"))
            .await,
        "agents",
        agents + 1,
    );
    assert_eq!(head(storage).await, before);
    assert!(storage.get_agent("agent-q2").await.unwrap().is_none());
    assert!(
        storage
            .delete_agent("admin", "agent-q1", 9, &event("agent.delete"))
            .await
            .unwrap()
    );
    storage
        .insert_agent_within(&agent("agent-q2", 42, "admin"), max, &event("agent.create"))
        .await
        .unwrap();
    assert_eq!(live_agents(storage).await, agents + 1);
}

/// The agents that are not deleted, of both owners the suite uses.
async fn live_agents(storage: &dyn Storage) -> u64 {
    let mut n = 0;
    for owner in ["admin", "someone"] {
        n += storage.list_agents(owner).await.unwrap().len() as u64;
    }
    n
}

/// Writers on both handles, released together, race for the last place under a limit: exactly
/// one gets it, every other one is refused with nothing written. On PostgreSQL this is what the
/// `quota_locks` row lock is for; without it, several counts see `limit - 1` and all insert.
async fn concurrent_creates_at_the_limit_let_exactly_one_through(
    storage: &Arc<dyn Storage>,
    replica: &Arc<dyn Storage>,
) {
    const WRITERS: usize = 8;
    let (vaults, secrets) = live_counts(&**storage).await;
    let handles = [Arc::clone(storage), Arc::clone(replica)];

    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let storage = Arc::clone(&handles[i % 2]);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            storage
                .insert_vault_within(
                    &vault(&format!("vault-race-{i}")),
                    Some(vaults + 1),
                    &event("vault.create"),
                )
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => created += 1,
            refused => limit_reached(refused, "vaults", vaults + 1),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(live_counts(&**storage).await.0, vaults + 1);

    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let storage = Arc::clone(&handles[i % 2]);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let new = version_at("vault-1", &format!("quota-race-{i}"), 1, "", vec![share(1)]);
            barrier.wait().await;
            storage
                .put_version_within(&new, Some(secrets + 1), &event("secret.write"))
                .await
        }));
    }
    let mut written = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => written += 1,
            refused => limit_reached(refused, "secrets", secrets + 1),
        }
    }
    assert_eq!(written, 1);
    assert_eq!(live_counts(&**storage).await.1, secrets + 1);

    let agents = live_agents(&**storage).await;
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let storage = Arc::clone(&handles[i % 2]);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let hash = 50 + u8::try_from(i).unwrap();
            let new = agent(&format!("agent-race-{i}"), hash, "admin");
            barrier.wait().await;
            storage
                .insert_agent_within(&new, Some(agents + 1), &event("agent.create"))
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => created += 1,
            refused => limit_reached(refused, "agents", agents + 1),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(live_agents(&**storage).await, agents + 1);
}

/// The event a restart appends for each job it pauses.
fn pause_event(job: &CmekJobRecord) -> Result<NewAuditEvent, AuditError> {
    let mut paused = event("cmek.rotate.pause");
    paused.resource_type = "cmek_job".into();
    paused.resource_id = job.id.clone();
    Ok(paused)
}

fn job(id: &str, vault_id: &str, old: &str, new: &str) -> CmekJobRecord {
    CmekJobRecord {
        id: id.into(),
        vault_id: vault_id.into(),
        old_fingerprint: old.into(),
        new_fingerprint: new.into(),
        status: CmekJobStatus::Running,
        processed: 0,
        total: 0,
        error: None,
        created_at: 11,
        updated_at: 11,
    }
}

async fn cmek_state_flags_writes_and_rotation_rewrites_in_place(storage: &dyn Storage) {
    let put = |path: &str, n: u64| version_at("vault-k", path, n, "", vec![share(1), share(2)]);
    storage
        .insert_vault(&vault("vault-k"), &event("vault.create"))
        .await
        .unwrap();
    assert_eq!(
        storage.vault_cmek_fingerprint("vault-k").await.unwrap(),
        None
    );
    let plain = storage
        .put_version(&put("plain", 1), &event("secret.write"))
        .await
        .unwrap();
    assert_eq!(plain.cmek_fingerprint, None);

    assert!(
        storage
            .set_vault_cmek("vault-k", Some("aa"), &event("vault.cmek"))
            .await
            .unwrap()
    );
    let before = head(storage).await;
    assert!(
        !storage
            .set_vault_cmek("no-such-vault", Some("aa"), &event("vault.cmek"))
            .await
            .unwrap()
    );
    assert!(
        storage
            .get_vault("vault-k")
            .await
            .unwrap()
            .unwrap()
            .cmek_enabled
    );
    assert_eq!(
        storage
            .vault_cmek_fingerprint("vault-k")
            .await
            .unwrap()
            .as_deref(),
        Some("aa")
    );
    // The flag is the vault's, whatever the caller put in the record.
    let mut x = put("x", 1);
    x.version.cmek_fingerprint = Some("zz".into());
    assert_eq!(
        storage
            .put_version(&x, &event("secret.write"))
            .await
            .unwrap()
            .cmek_fingerprint
            .as_deref(),
        Some("aa")
    );
    storage
        .put_version(&put("y", 1), &event("secret.write"))
        .await
        .unwrap();
    storage
        .put_version(&put("gone", 1), &event("secret.write"))
        .await
        .unwrap();
    assert!(
        storage
            .delete_secret("vault-k", "gone", &event("secret.delete"))
            .await
            .unwrap()
    );
    // Refused CMEK changes record no event (the four writes between did).
    assert_eq!(head(storage).await, before + 4);
    let (read, _) = storage
        .get_version("vault-k", "x", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.cmek_fingerprint.as_deref(), Some("aa"));

    // A job starts only from the vault's current fingerprint, and counts its live versions.
    assert!(matches!(
        storage
            .create_cmek_job(
                &job("j0", "vault-k", "zz", "bb"),
                &event("cmek.rotate.start")
            )
            .await,
        Err(StorageError::Conflict)
    ));
    let started = storage
        .create_cmek_job(
            &job("j1", "vault-k", "aa", "bb"),
            &event("cmek.rotate.start"),
        )
        .await
        .unwrap();
    assert_eq!(
        (started.status, started.processed, started.total),
        (CmekJobStatus::Running, 0, 2)
    );
    assert_eq!(
        storage
            .vault_cmek_fingerprint("vault-k")
            .await
            .unwrap()
            .as_deref(),
        Some("bb")
    );
    let w = storage
        .put_version(&put("w", 1), &event("secret.write"))
        .await
        .unwrap();
    assert_eq!(w.cmek_fingerprint.as_deref(), Some("bb"));
    // One unfinished job per vault, and its fingerprint is the job's to change.
    assert!(matches!(
        storage
            .create_cmek_job(
                &job("j2", "vault-k", "bb", "cc"),
                &event("cmek.rotate.start")
            )
            .await,
        Err(StorageError::Conflict)
    ));
    assert!(
        !storage
            .set_vault_cmek("vault-k", None, &event("vault.cmek"))
            .await
            .unwrap()
    );
    assert_eq!(
        storage
            .vault_cmek_fingerprint("vault-k")
            .await
            .unwrap()
            .as_deref(),
        Some("bb")
    );
    assert_eq!(
        storage
            .unfinished_cmek_job("vault-k")
            .await
            .unwrap()
            .unwrap()
            .id,
        "j1"
    );
    assert!(
        storage
            .get_cmek_job("vault-k", "j2")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        storage
            .get_cmek_job("vault-1", "j1")
            .await
            .unwrap()
            .is_none()
    );

    // Batches hold the versions still under the old key, each with its shares.
    assert_eq!(
        storage
            .cmek_versions_with("vault-k", "aa", 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let batch = storage
        .cmek_versions_with("vault-k", "aa", 10)
        .await
        .unwrap();
    let paths: BTreeSet<&str> = batch.iter().map(|(v, _)| v.path.as_str()).collect();
    assert_eq!(paths, BTreeSet::from(["x", "y"]));
    assert!(batch.iter().all(|(_, shares)| shares.len() == 2));

    // A rewrite replaces the envelope and the shares and moves the flag, once.
    let (x_record, _) = batch.iter().find(|(v, _)| v.path == "x").unwrap();
    let new_shares = [ShareRecord {
        slot: 3,
        provider: "azure".into(),
        blob: Some(vec![9; 4]),
    }];
    assert!(
        storage
            .rewrite_cmek_version(
                &started,
                &x_record.version_id,
                &[7, 7],
                &new_shares,
                &event("cmek.rotate.version")
            )
            .await
            .unwrap()
    );
    assert!(
        !storage
            .rewrite_cmek_version(
                &started,
                &x_record.version_id,
                &[8, 8],
                &new_shares,
                &event("cmek.rotate.version")
            )
            .await
            .unwrap()
    );
    let (x_read, x_shares) = storage
        .get_version("vault-k", "x", Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(x_read.envelope, [7, 7]);
    assert_eq!(x_read.cmek_fingerprint.as_deref(), Some("bb"));
    assert_eq!(x_shares, new_shares);
    let progress = storage
        .get_cmek_job("vault-k", "j1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((progress.processed, progress.total), (1, 2));

    // A restart pauses running jobs (and only those), with a reason; resuming runs it again.
    let before = head(storage).await;
    assert_eq!(
        storage.pause_running_cmek_jobs(&pause_event).await.unwrap(),
        1
    );
    assert_eq!(
        storage.pause_running_cmek_jobs(&pause_event).await.unwrap(),
        0
    );
    // One event for the one paused job, in the same transaction as the pause.
    assert_eq!(head(storage).await, before + 1);
    let pause = storage.audit_chain(before + 1, 1).await.unwrap();
    assert_eq!(pause.len(), 1);
    assert_eq!(
        (
            pause[0].event.action.as_str(),
            pause[0].event.resource_id.as_str()
        ),
        ("cmek.rotate.pause", "j1")
    );
    let paused = storage
        .get_cmek_job("vault-k", "j1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paused.status, CmekJobStatus::Paused);
    assert!(paused.error.is_some());
    storage
        .set_cmek_job_status(
            "j1",
            CmekJobStatus::Running,
            None,
            &event("cmek.rotate.status"),
        )
        .await
        .unwrap();
    let (y_record, _) = batch.iter().find(|(v, _)| v.path == "y").unwrap();
    assert!(
        storage
            .rewrite_cmek_version(
                &started,
                &y_record.version_id,
                &[6],
                &new_shares,
                &event("cmek.rotate.version")
            )
            .await
            .unwrap()
    );
    assert!(
        storage
            .cmek_versions_with("vault-k", "aa", 10)
            .await
            .unwrap()
            .is_empty()
    );
    storage
        .set_cmek_job_status(
            "j1",
            CmekJobStatus::Completed,
            None,
            &event("cmek.rotate.status"),
        )
        .await
        .unwrap();
    let done = storage
        .get_cmek_job("vault-k", "j1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.status, done.processed, done.error),
        (CmekJobStatus::Completed, 2, None)
    );
    assert!(
        storage
            .unfinished_cmek_job("vault-k")
            .await
            .unwrap()
            .is_none()
    );

    // With the job finished the vault's CMEK can be turned off; later writes are not flagged.
    assert!(
        storage
            .set_vault_cmek("vault-k", None, &event("vault.cmek"))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .get_vault("vault-k")
            .await
            .unwrap()
            .unwrap()
            .cmek_enabled
    );
    assert_eq!(
        storage.vault_cmek_fingerprint("vault-k").await.unwrap(),
        None
    );
    assert_eq!(
        storage
            .put_version(&put("late", 1), &event("secret.write"))
            .await
            .unwrap()
            .cmek_fingerprint,
        None
    );
}

const TREASURY_VAULT: &str = "vault-t";

/// A wallet whose key is version `version` of `user`'s `chain` key secret.
fn wallet(id: &str, user: &str, chain: &str, version: u64, created_at: i64) -> WalletRecord {
    WalletRecord {
        id: id.into(),
        user_id: user.into(),
        vault_id: TREASURY_VAULT.into(),
        chain: chain.into(),
        curve: "secp256k1".into(),
        public_key_hex: format!("02{}", "ab".repeat(32)),
        address: format!("address-{id}"),
        is_active: true,
        secret_path: format!("users/{user}/chains/{chain}/private_key"),
        secret_version: version,
        created_at,
    }
}

/// The key version written with `wallet`.
fn wallet_key(wallet: &WalletRecord) -> NewVersion {
    version_at(
        &wallet.vault_id,
        &wallet.secret_path,
        wallet.secret_version,
        &wallet.id,
        vec![share(1), share(2)],
    )
}

/// The deleted flag of every version of `wallet`'s key secret, oldest first.
async fn key_versions_deleted(storage: &dyn Storage, wallet: &WalletRecord) -> Vec<bool> {
    storage
        .list_versions(&wallet.vault_id, &wallet.secret_path)
        .await
        .unwrap()
        .iter()
        .map(|v| v.deleted)
        .collect()
}

async fn treasury_wallets_rotate_and_delete_once(storage: &Arc<dyn Storage>) {
    storage
        .insert_vault(&vault(TREASURY_VAULT), &event("vault.create"))
        .await
        .unwrap();
    let eth = wallet("wallet-eth-1", "alice", "ethereum", 1, 10);
    let before = head(&**storage).await;
    let stored = storage
        .put_wallet(&wallet_key(&eth), &eth, None, &event("treasury.generate"))
        .await
        .unwrap();
    assert_eq!(
        (stored.path.as_str(), stored.version, stored.deleted),
        (eth.secret_path.as_str(), 1, false)
    );
    assert_eq!(head(&**storage).await, before + 1);
    assert_eq!(
        storage.list_wallets("alice").await.unwrap(),
        vec![eth.clone()]
    );

    // A second active wallet on the same chain is refused by the unique index, and its key
    // version goes with it: nothing of the failed transaction remains, not even its event.
    let mut twin = wallet("wallet-eth-twin", "alice", "ethereum", 2, 11);
    let before = head(&**storage).await;
    assert!(matches!(
        storage
            .put_wallet(&wallet_key(&twin), &twin, None, &event("treasury.generate"))
            .await,
        Err(StorageError::Conflict)
    ));
    assert_eq!(head(&**storage).await, before);
    assert_eq!(key_versions_deleted(&**storage, &eth).await, vec![false]);
    // The same refusal when the key goes to a fresh secret, so only the index can stop it.
    twin.secret_path = "users/alice/chains/ethereum/other_key".into();
    twin.secret_version = 1;
    assert!(matches!(
        storage
            .put_wallet(&wallet_key(&twin), &twin, None, &event("treasury.generate"))
            .await,
        Err(StorageError::Conflict)
    ));
    assert_eq!(head(&**storage).await, before);
    assert!(
        storage
            .list_versions(TREASURY_VAULT, &twin.secret_path)
            .await
            .unwrap()
            .is_empty()
    );

    // Another chain, and another user's wallets, are separate.
    let sol = wallet("wallet-sol-1", "alice", "solana", 1, 20);
    storage
        .put_wallet(&wallet_key(&sol), &sol, None, &event("treasury.generate"))
        .await
        .unwrap();
    let bob = wallet("wallet-eth-bob", "bob", "ethereum", 1, 5);
    storage
        .put_wallet(&wallet_key(&bob), &bob, None, &event("treasury.generate"))
        .await
        .unwrap();
    assert_eq!(
        storage.list_wallets("alice").await.unwrap(),
        vec![eth.clone(), sol.clone()]
    );
    assert_eq!(
        storage.list_wallets("bob").await.unwrap(),
        vec![bob.clone()]
    );
    assert!(storage.list_wallets("carol").await.unwrap().is_empty());

    // Rotation: the old wallet is deactivated and its key version deleted, in one write.
    let rotated = wallet("wallet-eth-2", "alice", "ethereum", 2, 30);
    let before = head(&**storage).await;
    let stored = storage
        .put_wallet(
            &wallet_key(&rotated),
            &rotated,
            Some(&eth.id),
            &event("treasury.rotate"),
        )
        .await
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(head(&**storage).await, before + 1);
    assert_eq!(
        storage.list_wallets("alice").await.unwrap(),
        vec![sol.clone(), rotated.clone()]
    );
    assert_eq!(
        key_versions_deleted(&**storage, &eth).await,
        vec![true, false]
    );

    // Rotating a wallet that is no longer active is a conflict and changes nothing.
    let stale = wallet("wallet-eth-stale", "alice", "ethereum", 3, 31);
    let before = head(&**storage).await;
    assert!(matches!(
        storage
            .put_wallet(
                &wallet_key(&stale),
                &stale,
                Some(&eth.id),
                &event("treasury.rotate"),
            )
            .await,
        Err(StorageError::Conflict)
    ));
    assert_eq!(head(&**storage).await, before);
    assert_eq!(
        key_versions_deleted(&**storage, &eth).await,
        vec![true, false]
    );
    assert_eq!(
        storage.list_wallets("alice").await.unwrap(),
        vec![sol.clone(), rotated.clone()]
    );

    // Concurrent generates of one chain, each to its own secret so that only the unique index
    // on active wallets can arbitrate: exactly one wins.
    const RACERS: usize = 6;
    let mut tasks = Vec::new();
    for r in 0..RACERS {
        let storage = Arc::clone(storage);
        tasks.push(tokio::spawn(async move {
            let mut racer = wallet(&format!("wallet-btc-{r}"), "dave", "bitcoin", 1, 40);
            racer.secret_path = format!("users/dave/chains/bitcoin/racer-{r}");
            match storage
                .put_wallet(
                    &wallet_key(&racer),
                    &racer,
                    None,
                    &event("treasury.generate"),
                )
                .await
            {
                Ok(_) => Some(racer),
                Err(StorageError::Conflict) => None,
                Err(e) => panic!("racer {r}: {e}"),
            }
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.unwrap());
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(storage.list_wallets("dave").await.unwrap(), winners);

    // Deletion deactivates the wallet and deletes every version of its key, once.
    let before = head(&**storage).await;
    assert!(
        storage
            .delete_wallet(&rotated, 50, &event("treasury.delete"))
            .await
            .unwrap()
    );
    assert_eq!(head(&**storage).await, before + 1);
    assert_eq!(
        storage.list_wallets("alice").await.unwrap(),
        vec![sol.clone()]
    );
    assert_eq!(
        key_versions_deleted(&**storage, &eth).await,
        vec![true, true]
    );
    assert!(
        !storage
            .delete_wallet(&rotated, 51, &event("treasury.delete"))
            .await
            .unwrap()
    );
    assert_eq!(head(&**storage).await, before + 1);

    // With no active wallet left on the chain, a new one may be generated.
    let again = wallet("wallet-eth-3", "alice", "ethereum", 3, 60);
    storage
        .put_wallet(
            &wallet_key(&again),
            &again,
            None,
            &event("treasury.generate"),
        )
        .await
        .unwrap();
    assert_eq!(
        storage.list_wallets("alice").await.unwrap(),
        vec![sol, again]
    );
    assert_eq!(
        key_versions_deleted(&**storage, &eth).await,
        vec![true, true, false]
    );
}
