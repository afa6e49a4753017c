//! CMEK: enabling and disabling, the flag on writes and reads, rotation (keys checked against
//! fingerprints, in-place re-encryption, failure and resumption, restart).

use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};
use vault_server::{
    CmekJobRecord, CmekJobStatus, CmekKey, Config, SqliteStorage, Storage as _, VaultServer,
    cmek_decrypt, cmek_encrypt,
};

use crate::pg::PgCluster;
use crate::support::{Answer, TestServer};

async fn enable(t: &TestServer, vault: &str, key: &CmekKey) -> Answer {
    t.call(
        Method::POST,
        &format!("/v1/vaults/{vault}/cmek"),
        Some(json!({ "fingerprint": key.fingerprint() })),
    )
    .await
}

async fn put_cmek(t: &TestServer, vault: &str, path: &str, key: &CmekKey, plain: &str) {
    let value = cmek_encrypt(key, plain.as_bytes()).unwrap();
    let answer = t.put(vault, path, &value).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.body["cmek_encrypted"], true);
}

async fn read_plain(
    t: &TestServer,
    vault: &str,
    path: &str,
    version: u64,
    key: &CmekKey,
) -> String {
    let answer = t
        .call(
            Method::GET,
            &format!("/v1/vaults/{vault}/secret-version/{path}/{version}"),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["cmek_encrypted"], true);
    let plain = cmek_decrypt(key, answer.body["value"].as_str().unwrap()).unwrap();
    String::from_utf8(plain.to_vec()).unwrap()
}

async fn rotate(
    t: &TestServer,
    vault: &str,
    old: &CmekKey,
    new: &CmekKey,
    fingerprint: &str,
) -> Answer {
    let old = old.to_base64();
    let new = new.to_base64();
    t.call_with(
        Method::POST,
        &format!("/v1/vaults/{vault}/cmek-rotate"),
        Some(json!({ "new_fingerprint": fingerprint })),
        &[
            ("x-cmek-old-key", old.as_str()),
            ("x-cmek-new-key", new.as_str()),
        ],
    )
    .await
}

/// Polls the job until it is no longer running.
async fn settle(t: &TestServer, vault: &str, job: &str) -> Value {
    for _ in 0..200 {
        let answer = t
            .call(
                Method::GET,
                &format!("/v1/vaults/{vault}/cmek-rotate/{job}"),
                None,
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.body["status"] != "running" {
            return answer.body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the rotation job did not finish");
}

#[tokio::test]
async fn enabling_flags_new_writes_and_disabling_stops_flagging() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    assert_eq!(
        t.put(&v, "plain", "before").await.body["cmek_encrypted"],
        false
    );
    t.call(
        Method::POST,
        &format!("/v1/vaults/{v}/cmek"),
        Some(json!({ "fingerprint": "abc" })),
    )
    .await
    .assert_problem(
        400,
        "validation",
        "Invalid request",
        "`fingerprint` must be the SHA-256 of the key as 64 hex digits",
    );
    let key = CmekKey::generate().unwrap();
    let on = enable(&t, &v, &key).await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.body["cmek_enabled"], true);
    // Enabling again with the same key is not a change; another key is a conflict.
    assert_eq!(enable(&t, &v, &key).await.status, 200);
    enable(&t, &v, &CmekKey::generate().unwrap())
        .await
        .assert_problem_type(409, "conflict");

    put_cmek(&t, &v, "db/password", &key, "hunter2").await;
    assert_eq!(read_plain(&t, &v, "db/password", 1, &key).await, "hunter2");
    let latest = t.get(&v, "db/password", None).await;
    assert_eq!(latest.body["cmek_encrypted"], true);
    assert_eq!(t.get(&v, "plain", None).await.body["cmek_encrypted"], false);
    let listed = t
        .call(Method::GET, &format!("/v1/vaults/{v}/secrets"), None)
        .await;
    let flags: Vec<(&str, bool)> = listed.body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["path"].as_str().unwrap(), s["cmek_encrypted"] == true))
        .collect();
    assert_eq!(flags, [("db/password", true), ("plain", false)]);

    let off = t
        .call(Method::DELETE, &format!("/v1/vaults/{v}/cmek"), None)
        .await;
    assert_eq!(off.status, 200);
    assert_eq!(off.body["cmek_enabled"], false);
    assert_eq!(t.put(&v, "after", "x").await.body["cmek_encrypted"], false);
    // Values written while it was on stay flagged.
    assert_eq!(
        t.get(&v, "db/password", None).await.body["cmek_encrypted"],
        true
    );
}

#[tokio::test]
async fn rotation_checks_both_keys_against_their_fingerprints() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    let old = CmekKey::generate().unwrap();
    let new = CmekKey::generate().unwrap();
    let new_fp = new.fingerprint();
    // CMEK off.
    rotate(&t, &v, &old, &new, &new_fp).await.assert_problem(
        409,
        "conflict",
        "Conflict",
        "CMEK is off for this vault; turn it on with POST /v1/vaults/{id}/cmek",
    );
    assert_eq!(enable(&t, &v, &old).await.status, 200);
    let wrong = CmekKey::generate().unwrap();
    rotate(&t, &v, &wrong, &new, &new_fp).await.assert_problem(
        403,
        "cmek-key-mismatch",
        "CMEK key mismatch",
        "the key in `x-cmek-old-key` does not match the vault's CMEK fingerprint",
    );
    rotate(&t, &v, &old, &wrong, &new_fp).await.assert_problem(
        403,
        "cmek-key-mismatch",
        "CMEK key mismatch",
        "the key in `x-cmek-new-key` does not match `new_fingerprint` (SHA-256 of the 32 key \
         bytes, hex)",
    );
    rotate(&t, &v, &old, &old, &old.fingerprint())
        .await
        .assert_problem_type(400, "validation");
    // Missing and malformed headers name the header.
    let missing = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{v}/cmek-rotate"),
            Some(json!({ "new_fingerprint": new_fp })),
        )
        .await;
    missing.assert_problem(
        400,
        "validation",
        "Invalid request",
        "send the key as base64 of 32 bytes in the `x-cmek-old-key` header",
    );
    let short = t
        .call_with(
            Method::POST,
            &format!("/v1/vaults/{v}/cmek-rotate"),
            Some(json!({ "new_fingerprint": new_fp })),
            &[
                ("x-cmek-old-key", "c2hvcnQ="),
                ("x-cmek-new-key", new.to_base64().as_str()),
            ],
        )
        .await;
    short.assert_problem(
        400,
        "validation",
        "Invalid request",
        "the `x-cmek-old-key` header is refused: a CMEK key must be base64 of exactly 32 bytes",
    );
    // No key material in any answer.
    for answer in [&missing, &short] {
        assert!(!String::from_utf8_lossy(&answer.raw).contains(new.to_base64().as_str()));
    }
    // Vaults whose custody has a client slot cannot be rotated by the server.
    let client = t.vault(Some("2of2_client_custody")).await;
    assert_eq!(enable(&t, &client, &old).await.status, 200);
    rotate(&t, &client, &old, &new, &new_fp)
        .await
        .assert_problem_type(409, "conflict");
}

#[tokio::test]
async fn rotation_re_encrypts_every_version_in_place() {
    rotation_re_encrypts_every_version_in_place_on(TestServer::start().await).await;
}

/// The same round trip with the server on PostgreSQL: the job, its batches and its rewrites go
/// through the PostgreSQL store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_re_encrypts_every_version_in_place_on_postgres() {
    let cluster = PgCluster::start();
    let database = cluster.database("cmek").await;
    let t = TestServer::with_config(|c| c.with_database(database)).await;
    let t = rotation_re_encrypts_every_version_in_place_on(t).await;
    t.server.close().await;
}

async fn rotation_re_encrypts_every_version_in_place_on(t: TestServer) -> TestServer {
    let v = t.vault(Some("2of3_multi_hsm")).await;
    assert_eq!(t.put(&v, "not-cmek", "plain").await.status, 201);
    let old = CmekKey::generate().unwrap();
    let new = CmekKey::generate().unwrap();
    assert_eq!(enable(&t, &v, &old).await.status, 200);
    put_cmek(&t, &v, "a", &old, "a1").await;
    put_cmek(&t, &v, "a", &old, "a2").await;
    put_cmek(&t, &v, "b/c", &old, "bc").await;
    let disabled = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{v}/secret-version-disable/a/1"),
            None,
        )
        .await;
    assert_eq!(disabled.status, 204);

    let started = rotate(&t, &v, &old, &new, &new.fingerprint()).await;
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(started.body["status"], "running");
    assert_eq!(started.body["total"], 3);
    let job = started.body["job_id"].as_str().unwrap().to_owned();
    let done = settle(&t, &v, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["processed"], 3);
    assert_eq!(done["error"], Value::Null);
    assert_eq!(done["old_fingerprint"], old.fingerprint());
    assert_eq!(done["new_fingerprint"], new.fingerprint());

    // Same version numbers, new key; the old key no longer opens them.
    assert_eq!(read_plain(&t, &v, "a", 2, &new).await, "a2");
    assert_eq!(read_plain(&t, &v, "b/c", 1, &new).await, "bc");
    let latest = t.get(&v, "a", None).await;
    assert_eq!(latest.body["version"], 2);
    assert!(cmek_decrypt(&old, latest.body["value"].as_str().unwrap()).is_err());
    let versions = t
        .call(
            Method::GET,
            &format!("/v1/vaults/{v}/secret-versions/a"),
            None,
        )
        .await;
    assert_eq!(versions.body["versions"].as_array().unwrap().len(), 2);
    // The disabled version was re-encrypted too (it still answers 410), and the plain secret
    // was not touched.
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/v1/vaults/{v}/secret-version/a/1"),
            None
        )
        .await
        .status,
        410
    );
    assert_eq!(t.get(&v, "not-cmek", None).await.body["value"], "plain");
    // The vault is on the new key: new writes are flagged with it, enabling with it is a no-op.
    assert_eq!(enable(&t, &v, &new).await.status, 200);
    enable(&t, &v, &old)
        .await
        .assert_problem_type(409, "conflict");
    t
}

#[tokio::test]
async fn a_value_the_old_key_cannot_open_fails_the_job_cleanly_and_it_resumes() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    let old = CmekKey::generate().unwrap();
    let new = CmekKey::generate().unwrap();
    assert_eq!(enable(&t, &v, &old).await.status, 200);
    for i in 0..5 {
        put_cmek(&t, &v, &format!("good{i}"), &old, "fine").await;
    }
    // Flagged, but encrypted with another key.
    let stray = CmekKey::generate().unwrap();
    put_cmek(&t, &v, "stray", &stray, "lost").await;

    let started = rotate(&t, &v, &old, &new, &new.fingerprint()).await;
    assert_eq!(started.status, 202);
    let job = started.body["job_id"].as_str().unwrap().to_owned();
    let failed = settle(&t, &v, &job).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        failed["error"],
        "secret \"stray\" version 1 does not decrypt with the old key; it is unchanged and \
         still opens with the old key; send the keys again to resume"
    );
    // Whatever was processed opens with the new key, the rest with the old: never neither.
    let processed = failed["processed"].as_u64().unwrap();
    let mut on_new = 0;
    for i in 0..5 {
        let path = format!("good{i}");
        let value = t.get(&v, &path, None).await.body["value"]
            .as_str()
            .unwrap()
            .to_owned();
        match (cmek_decrypt(&new, &value), cmek_decrypt(&old, &value)) {
            (Ok(p), Err(_)) => {
                assert_eq!(p.as_slice(), b"fine");
                on_new += 1;
            }
            (Err(_), Ok(p)) => assert_eq!(p.as_slice(), b"fine"),
            _ => panic!("{path} opens with neither or both keys"),
        }
    }
    assert_eq!(on_new, processed);
    // CMEK cannot be changed while the job is unfinished.
    t.call(Method::DELETE, &format!("/v1/vaults/{v}/cmek"), None)
        .await
        .assert_problem_type(409, "conflict");
    // Another rotation target is refused; the wrong old key is refused.
    let other = CmekKey::generate().unwrap();
    rotate(&t, &v, &old, &other, &other.fingerprint())
        .await
        .assert_problem_type(409, "conflict");
    rotate(&t, &v, &stray, &new, &new.fingerprint())
        .await
        .assert_problem_type(403, "cmek-key-mismatch");

    // The client deals with the stray value, then resumes the same job with the same keys.
    let deleted = t
        .call(
            Method::DELETE,
            &format!("/v1/vaults/{v}/secrets/stray"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    let resumed = rotate(&t, &v, &old, &new, &new.fingerprint()).await;
    assert_eq!(resumed.status, 202, "{}", resumed.body);
    assert_eq!(resumed.body["job_id"], job.as_str());
    let done = settle(&t, &v, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["processed"], 5);
    for i in 0..5 {
        let value = t.get(&v, &format!("good{i}"), None).await.body["value"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(cmek_decrypt(&new, &value).unwrap().as_slice(), b"fine");
    }
    let off = t
        .call(Method::DELETE, &format!("/v1/vaults/{v}/cmek"), None)
        .await;
    assert_eq!(off.status, 200);
}

#[tokio::test]
async fn a_restart_pauses_a_running_job_until_the_client_sends_the_keys_again() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    let old = CmekKey::generate().unwrap();
    let new = CmekKey::generate().unwrap();
    assert_eq!(enable(&t, &v, &old).await.status, 200);
    put_cmek(&t, &v, "k", &old, "v").await;
    t.server.close().await;

    // A job the server was running when it stopped: persisted as `running`, no keys anywhere.
    let storage = SqliteStorage::open(t.dir.path()).await.unwrap();
    let job = storage
        .create_cmek_job(
            &CmekJobRecord {
                id: "job-1".into(),
                vault_id: v.clone(),
                old_fingerprint: old.fingerprint(),
                new_fingerprint: new.fingerprint(),
                status: CmekJobStatus::Running,
                processed: 0,
                total: 0,
                error: None,
                created_at: 1,
                updated_at: 1,
            },
            &crate::audit::system_event("cmek.rotate", "job-1"),
        )
        .await
        .unwrap();
    assert_eq!(job.total, 1);
    storage.close().await;

    let server = VaultServer::open(Config::default_config().with_data_dir(t.dir.path()))
        .await
        .unwrap();
    let t = TestServer {
        server,
        admin_key: t.admin_key,
        dir: t.dir,
    };
    let paused = t
        .call(
            Method::GET,
            &format!("/v1/vaults/{v}/cmek-rotate/job-1"),
            None,
        )
        .await;
    assert_eq!(paused.body["status"], "paused", "{}", paused.body);
    assert!(
        paused.body["error"]
            .as_str()
            .unwrap()
            .contains("send the same POST …/cmek-rotate with both keys to resume")
    );
    // Nothing moved: the value still opens with the old key.
    assert_eq!(read_plain(&t, &v, "k", 1, &old).await, "v");
    let resumed = rotate(&t, &v, &old, &new, &new.fingerprint()).await;
    assert_eq!(resumed.status, 202, "{}", resumed.body);
    let done = settle(&t, &v, "job-1").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(read_plain(&t, &v, "k", 1, &new).await, "v");
    t.call(
        Method::GET,
        &format!("/v1/vaults/{v}/cmek-rotate/nope"),
        None,
    )
    .await
    .assert_problem_type(404, "not-found");
    // The restart's pause is in the trail, appended with the pause itself.
    let paused = audit_events(&t, "cmek.rotate.pause").await;
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0]["actor_type"], "system");
    assert_eq!(paused[0]["request_id"], "startup");
    assert_eq!(paused[0]["vault_id"], v.as_str());
    assert_chain_valid(&t).await;
}

async fn audit_events(t: &TestServer, action: &str) -> Vec<Value> {
    let answer = t
        .call(
            Method::GET,
            &format!("/v1/audit/events?action={action}&limit=100"),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["events"].as_array().unwrap().clone()
}

async fn assert_chain_valid(t: &TestServer) {
    let report = t.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.body["chain_valid"], true, "{}", report.body);
}

fn detail(event: &Value) -> Value {
    serde_json::from_str(event["detail"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn enabling_rotating_and_disabling_cmek_are_audited_and_the_chain_verifies() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    let old = CmekKey::generate().unwrap();
    let new = CmekKey::generate().unwrap();
    assert_eq!(enable(&t, &v, &old).await.status, 200);
    put_cmek(&t, &v, "a", &old, "one").await;
    put_cmek(&t, &v, "b", &old, "two").await;
    let started = rotate(&t, &v, &old, &new, &new.fingerprint()).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let job = started.body["job_id"].as_str().unwrap().to_owned();
    let done = settle(&t, &v, &job).await;
    assert_eq!(done["status"], "completed", "{done}");
    let off = t
        .call(Method::DELETE, &format!("/v1/vaults/{v}/cmek"), None)
        .await;
    assert_eq!(off.status, 200);

    let enabled = audit_events(&t, "cmek.enable").await;
    assert_eq!(enabled.len(), 1, "{enabled:?}");
    assert_eq!(enabled[0]["outcome"], "success");
    assert_eq!(enabled[0]["actor_type"], "user");
    assert_eq!(enabled[0]["vault_id"], v.as_str());
    assert_eq!(detail(&enabled[0])["fingerprint"], old.fingerprint());

    let rotated = audit_events(&t, "cmek.rotate").await;
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_eq!(rotated[0]["outcome"], "success");
    assert_eq!(detail(&rotated[0])["job_id"], job.as_str());
    assert_eq!(detail(&rotated[0])["old_fingerprint"], old.fingerprint());
    assert_eq!(detail(&rotated[0])["new_fingerprint"], new.fingerprint());
    let request_id = rotated[0]["request_id"].as_str().unwrap();

    // One event per re-encrypted version, by the job, traced to the request that started it.
    let versions = audit_events(&t, "cmek.rotate.version").await;
    assert_eq!(versions.len(), 2, "{versions:?}");
    let mut moved: Vec<&str> = versions
        .iter()
        .map(|e| e["resource_id"].as_str().unwrap())
        .collect();
    moved.sort_unstable();
    assert_eq!(moved, [format!("{v}/a"), format!("{v}/b")]);
    for event in &versions {
        assert_eq!(event["actor_type"], "system");
        assert_eq!(event["actor_id"], "cmek-rotation");
        assert_eq!(event["request_id"], request_id);
        assert_eq!(detail(event)["job_id"], job.as_str());
    }
    let complete = audit_events(&t, "cmek.rotate.complete").await;
    assert_eq!(complete.len(), 1, "{complete:?}");
    assert_eq!(complete[0]["request_id"], request_id);

    let disabled = audit_events(&t, "cmek.disable").await;
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    assert_eq!(disabled[0]["outcome"], "success");

    // No key ever reaches the trail: neither key's base64 nor its bytes in hex.
    let all = t
        .call(Method::GET, "/v1/audit/events?limit=1000", None)
        .await;
    let text = String::from_utf8(all.raw).unwrap();
    for key in [&old, &new] {
        assert!(!text.contains(key.to_base64().as_str()));
    }
    assert_chain_valid(&t).await;
}
