use axum::http::Method;
use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn create_list_get_delete_a_vault() {
    let t = TestServer::start().await;
    let created = t
        .call(
            Method::POST,
            "/v1/vaults",
            Some(json!({ "name": "payments", "description": "prod keys" })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let vault = created.body.clone();
    let id = vault["id"].as_str().unwrap();
    assert_eq!(vault["name"], "payments");
    assert_eq!(vault["description"], "prod keys");
    assert_eq!(vault["created_by"], "admin");
    assert_eq!(vault["cmek_enabled"], false);
    assert_eq!(vault["mpc_custody"], json!(null));
    assert_eq!(vault["mpc_threshold"], json!(null));
    assert_eq!(vault["mpc_providers"], json!(null));
    assert!(vault["created_at"].as_str().unwrap().ends_with('Z'));

    let listed = t.call(Method::GET, "/v1/vaults", None).await;
    assert_eq!(listed.body, json!({ "vaults": [vault.clone()] }));
    let got = t.call(Method::GET, &format!("/v1/vaults/{id}"), None).await;
    assert_eq!(got.body, vault);

    let deleted = t
        .call(Method::DELETE, &format!("/v1/vaults/{id}"), None)
        .await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.raw.is_empty());
    t.call(Method::GET, &format!("/v1/vaults/{id}"), None)
        .await
        .assert_problem(
            404,
            "not-found",
            "Not found",
            &format!("there is no vault with id {id:?}"),
        );
    assert_eq!(
        t.call(Method::GET, "/v1/vaults", None).await.body,
        json!({ "vaults": [] })
    );
}

#[tokio::test]
async fn enable_mpc_accepts_both_body_shapes() {
    let t = TestServer::start().await;
    let a = t.vault(None).await;
    let answer = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{a}/mpc"),
            Some(json!({ "custody_mode": "2of3_multi_hsm" })),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["mpc_custody"], "2of3_multi_hsm");
    assert_eq!(answer.body["mpc_threshold"], 2);
    assert_eq!(answer.body["mpc_providers"], json!(["gcp", "aws", "azure"]));

    let b = t.vault(None).await;
    let answer = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{b}/mpc"),
            Some(json!({ "mpc_custody": "2of2_client_custody" })),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["mpc_custody"], "2of2_client_custody");
    assert_eq!(answer.body["mpc_threshold"], 2);
    assert_eq!(answer.body["mpc_providers"], json!(["gcp"]));

    // Providers can be chosen for a named mode.
    let c = t.vault(None).await;
    let answer = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{c}/mpc"),
            Some(json!({ "custody_mode": "2of3_multi_hsm", "providers": ["azure", "gcp", "aws"] })),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["mpc_providers"], json!(["azure", "gcp", "aws"]));

    // The same mode again is not a change.
    let again = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{a}/mpc"),
            Some(json!({ "mpc_custody": "2of3_multi_hsm" })),
        )
        .await;
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn changing_a_set_mode_is_409() {
    let t = TestServer::start().await;
    let v = t.vault(Some("2of3_multi_hsm")).await;
    t.call(Method::POST, &format!("/v1/vaults/{v}/mpc"), Some(json!({ "custody_mode": "2of2_client_custody" })))
        .await
        .assert_problem(
            409,
            "conflict",
            "Conflict",
            "the vault's custody mode is already 2of3_multi_hsm and cannot be changed to 2of2_client_custody: secrets sealed under a mode stay bound to it",
        );
}

#[tokio::test]
async fn a_mode_with_unconfigured_providers_is_400_naming_them() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    t.call(
        Method::POST,
        &format!("/v1/vaults/{v}/mpc"),
        Some(json!({ "custody_mode": "2of3_multi_hsm", "providers": ["gcp", "hsm-eu", "hsm-us"] })),
    )
    .await
    .assert_problem(
        400,
        "providers-not-configured",
        "Key providers not configured",
        "custody mode 2of3_multi_hsm:gcp,hsm-eu,hsm-us needs key providers that are not configured: hsm-eu, hsm-us; configure them or choose a mode that uses only the configured providers",
    );
    // Nothing was set.
    let got = t.call(Method::GET, &format!("/v1/vaults/{v}"), None).await;
    assert_eq!(got.body["mpc_custody"], json!(null));
}

#[tokio::test]
async fn enable_mpc_needs_exactly_one_mode_field() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    t.call(Method::POST, &format!("/v1/vaults/{v}/mpc"), Some(json!({})))
        .await
        .assert_problem(
            400,
            "validation",
            "Invalid request",
            "send `custody_mode` (with optional `providers`) or `mpc_custody`, e.g. {\"custody_mode\": \"2of3_multi_hsm\"}",
        );
    t.call(
        Method::POST,
        &format!("/v1/vaults/{v}/mpc"),
        Some(json!({ "custody_mode": "standard", "mpc_custody": "standard" })),
    )
    .await
    .assert_problem(
        400,
        "validation",
        "Invalid request",
        "send either `custody_mode` or `mpc_custody`, not both",
    );
    t.call(
        Method::POST,
        &format!("/v1/vaults/{v}/mpc"),
        Some(json!({ "custody_mode": "7of2" })),
    )
    .await
    .assert_problem_type(400, "validation");
}

#[tokio::test]
async fn another_users_vault_is_404() {
    // Keys created through the API act for the same user, so a vault of another user can only
    // exist in another store; an id that is not the caller's is indistinguishable from none.
    let t = TestServer::start().await;
    t.call(
        Method::GET,
        "/v1/vaults/00000000-0000-4000-8000-000000000000",
        None,
    )
    .await
    .assert_problem_type(404, "not-found");
}
