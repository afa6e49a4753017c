//! The storage trait's guarantees, against SQLite (PostgreSQL will run the same checks).

use vault_server::{
    NewAuditEvent, NewVersion, ShareRecord, SqliteStorage, Storage, StorageError, VaultRecord,
    VersionRecord,
};

/// The audit event every write must carry.
fn event(action: &str) -> NewAuditEvent {
    NewAuditEvent {
        id: format!("event-{action}-{}", std::process::id()),
        occurred_at: 1,
        request_id: "test".into(),
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

fn vault() -> VaultRecord {
    VaultRecord {
        id: "vault-1".into(),
        name: "v".into(),
        description: String::new(),
        created_by: "admin".into(),
        created_at: 1,
        cmek_enabled: false,
        custody: None,
    }
}

fn version(n: u64, shares: Vec<ShareRecord>) -> NewVersion {
    NewVersion {
        new_secret_id: format!("secret-{n}"),
        version: VersionRecord {
            secret_id: String::new(),
            version_id: format!("version-{n}"),
            vault_id: "vault-1".into(),
            path: "db/password".into(),
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

fn share(slot: u8) -> ShareRecord {
    ShareRecord {
        slot,
        provider: "gcp".into(),
        blob: Some(vec![slot; 4]),
    }
}

#[tokio::test]
async fn a_version_is_written_with_all_its_shares_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path()).await.unwrap();
    storage
        .insert_vault(&vault(), &event("vault.create"))
        .await
        .unwrap();

    // The second share repeats slot 1: its insert fails inside the transaction, so neither the
    // version nor the first share may remain.
    let broken = version(1, vec![share(1), share(1)]);
    assert!(
        storage
            .put_version(&broken, &event("secret.write"))
            .await
            .is_err()
    );
    // The failed write's audit event was rolled back with it.
    assert_eq!(storage.audit_head().await.unwrap().0, 1);
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
        .put_version(&good, &event("secret.write.2"))
        .await
        .unwrap();
    assert_eq!(storage.audit_head().await.unwrap().0, 2);
    assert_eq!(stored.version, 1);
    let (read, shares) = storage
        .get_version("vault-1", "db/password", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.envelope, vec![1, 2, 3]);
    assert_eq!(shares.len(), 3);
    assert_eq!(shares[2].blob, None);

    // The same version number again is a conflict (a concurrent PUT won), not an overwrite.
    let mut again = version(1, vec![share(1)]);
    again.version.version_id = "version-1b".into();
    assert!(matches!(
        storage.put_version(&again, &event("secret.write.3")).await,
        Err(StorageError::Conflict)
    ));
    storage.close().await;
}

#[tokio::test]
async fn access_counting_never_exceeds_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path()).await.unwrap();
    storage
        .insert_vault(&vault(), &event("vault.create"))
        .await
        .unwrap();
    storage
        .put_version(&version(1, vec![share(1)]), &event("secret.write"))
        .await
        .unwrap();
    // max_access_count is 1: of many concurrent reads exactly one is counted.
    let mut tasks = Vec::new();
    for n in 0..16 {
        let storage = storage.clone();
        tasks.push(tokio::spawn(async move {
            let mut audit = event("secret.read");
            audit.id = format!("read-{n}");
            storage.record_access("version-1", &audit).await.unwrap()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        granted += usize::from(task.await.unwrap());
    }
    assert_eq!(granted, 1);
    // Only the counted read committed its event: vault, write, one read.
    assert_eq!(storage.audit_head().await.unwrap().0, 3);
    storage.close().await;
}
