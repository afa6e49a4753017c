//! Backup and restore as the README documents them: `vault-server backup --to FILE` for SQLite
//! (while the server runs and takes writes), `pg_dump`/`pg_restore` for PostgreSQL; each
//! restored into a fresh data directory (and a fresh database) that then reads every secret.

use std::path::Path;

use reqwest::Method;
use serde_json::json;
use vault_server::{Config, VaultServer};

use crate::pg::{PgCluster, path_str};
use crate::process::{Client, ServerProcess, ServerSpec};
use crate::support::TestServer;

/// The files of a data directory that are not in the database: the JWT signing seed, the audit
/// keys and the local providers' key directory (the README lists them).
fn copy_key_material(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    // `fs::copy` keeps the file's mode (0600).
    for file in ["jwt-ed25519.seed", "audit-hmac.key", "audit-ed25519.seed"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    copy_tree(&from.join("keys"), &to.join("keys"));
}

/// `cp -a` for a key directory: the local providers refuse keys that group or others could
/// read, so the modes (0700 directories, 0600 files) must come along.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Writes `count` secrets (two versions each) in a vault of each of two modes; returns what a
/// restored server must read back: (vault, path, version, value).
async fn write_fixture(client: &Client, count: usize) -> Vec<(String, String, u64, String)> {
    let mut expected = Vec::new();
    for mode in ["standard", "2of3_multi_hsm"] {
        let vault = client.create_vault(mode).await;
        for i in 0..count {
            for version in 1..=2u64 {
                let path = format!("app/{mode}/{i}");
                let value = format!("{mode}-{i}-v{version}");
                let (status, body) = client
                    .send(
                        Method::PUT,
                        &format!("/v1/vaults/{vault}/secrets/{path}"),
                        Some(json!({ "value": value })),
                    )
                    .await
                    .unwrap();
                assert_eq!(status, 201, "{body}");
                assert_eq!(body["version"], version);
                expected.push((vault.clone(), path, version, value));
            }
        }
    }
    expected
}

async fn read_back(
    server: VaultServer,
    admin_key: &str,
    expected: &[(String, String, u64, String)],
) {
    let dir = tempfile::tempdir().unwrap();
    let restored = TestServer {
        server,
        admin_key: admin_key.to_owned(),
        dir,
    };
    for (vault, path, version, value) in expected {
        let answer = restored
            .call(
                Method::GET,
                &format!("/v1/vaults/{vault}/secret-version/{path}/{version}"),
                None,
            )
            .await;
        assert_eq!(answer.status, 200, "{path} v{version}: {}", answer.body);
        assert_eq!(answer.body["value"], value.as_str());
    }
    // The restored audit trail verifies whole with the restored keys.
    let report = restored.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.body["chain_valid"], true, "{}", report.body);
    assert!(report.body["events_verified"].as_u64().unwrap() > 0);
    restored.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_online_backup_restores_into_a_fresh_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec {
        data_dir: dir.path().join("data"),
        database_url: None,
    };
    let server = ServerProcess::start(&spec, dir.path()).await;
    let key = server.printed_admin_key().await.unwrap();
    let client = Client::new(&server.base, &key);
    let expected = write_fixture(&client, 10).await;

    // Writes keep going while the backup runs: the copy is one consistent snapshot.
    let busy = {
        let client = client.clone();
        let vault = expected[0].0.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                let (status, _) = client
                    .send(
                        Method::PUT,
                        &format!("/v1/vaults/{vault}/secrets/during/backup"),
                        Some(json!({ "value": format!("during-{i}") })),
                    )
                    .await
                    .unwrap();
                assert_eq!(status, 201);
            }
        })
    };
    let backup = dir.path().join("backup.db");
    let out = spec
        .command()
        .args(["backup", "--to", path_str(&backup)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    for file in ["jwt-ed25519.seed", "audit-hmac.key", "audit-ed25519.seed"] {
        assert!(printed.contains(file), "{printed}");
    }
    busy.await.unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the backup is as private as the database"
        );
    }
    // A second backup to the same file is refused, not an overwrite.
    let again = spec
        .command()
        .args(["backup", "--to", path_str(&backup)])
        .output()
        .unwrap();
    assert!(!again.status.success());
    drop(server);

    // Restore: the copy as vault.db, plus the key material, in a fresh directory.
    let fresh = dir.path().join("restored");
    copy_key_material(&spec.data_dir, &fresh);
    std::fs::copy(&backup, fresh.join("vault.db")).unwrap();
    let restored = VaultServer::open(Config::default_config().with_data_dir(&fresh))
        .await
        .unwrap();
    assert!(restored.bootstrap_admin_key().await.unwrap().is_none());
    read_back(restored, &key, &expected).await;
}

#[tokio::test]
async fn backup_refuses_postgres_and_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("out.db");
    let missing = ServerSpec {
        data_dir: dir.path().join("nothing-here"),
        database_url: None,
    }
    .command()
    .args(["backup", "--to", path_str(&to)])
    .output()
    .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no database"));
    // Nothing was created where a store was expected.
    assert!(!dir.path().join("nothing-here").join("vault.db").exists());

    let postgres = ServerSpec {
        data_dir: dir.path().join("data"),
        database_url: Some("postgres://vault@127.0.0.1:1/vault".into()),
    }
    .command()
    .args(["backup", "--to", path_str(&to)])
    .output()
    .unwrap();
    assert!(!postgres.status.success());
    assert!(String::from_utf8_lossy(&postgres.stderr).contains("pg_dump"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dump_restores_into_a_fresh_database() {
    let cluster = PgCluster::start();
    cluster.database("source").await;
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec {
        data_dir: dir.path().join("data"),
        database_url: Some(cluster.url("source")),
    };
    let server = ServerProcess::start(&spec, dir.path()).await;
    let key = server.printed_admin_key().await.unwrap();
    let expected = write_fixture(&Client::new(&server.base, &key), 10).await;

    let dump = dir.path().join("vault.dump");
    let port = cluster.port().to_string();
    let out = cluster
        .client_tool("pg_dump")
        .args([
            "--format=custom",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            cluster.superuser(),
            "-d",
            "source",
            "-f",
            path_str(&dump),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);

    let restored_db = cluster.database("restored").await;
    let out = cluster
        .client_tool("pg_restore")
        .args([
            "--no-owner",
            "--exit-on-error",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            cluster.superuser(),
            "-d",
            "restored",
            path_str(&dump),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let fresh = dir.path().join("restored");
    copy_key_material(&spec.data_dir, &fresh);
    let restored = VaultServer::open(
        Config::default_config()
            .with_data_dir(&fresh)
            .with_database(restored_db),
    )
    .await
    .unwrap();
    assert!(restored.bootstrap_admin_key().await.unwrap().is_none());
    read_back(restored, &key, &expected).await;
}
