use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;

use crate::support::TestServer;

async fn token_for(t: &TestServer, key: &str) -> crate::support::Answer {
    t.raw(
        Request::post("/v1/auth/api-key-token")
            .header("content-type", "application/json")
            .body(Body::from(json!({ "api_key": key }).to_string()))
            .unwrap(),
    )
    .await
}

fn get_with(uri: &str, authorization: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", authorization)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn api_key_token_issues_an_eddsa_jwt_that_authenticates() {
    let t = TestServer::start().await;
    let answer = token_for(&t, &t.admin_key).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["token_type"], "Bearer");
    assert_eq!(answer.body["expires_in"], 3600);
    let token = answer.body["access_token"].as_str().unwrap();
    // The header says EdDSA.
    let header = token.split('.').next().unwrap();
    use base64::Engine as _;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");

    let answer = t
        .raw(get_with("/v1/vaults", &format!("Bearer {token}")))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!({ "vaults": [] }));
    // The scheme is case-insensitive.
    let answer = t
        .raw(get_with("/v1/vaults", &format!("bearer {token}")))
        .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn wrong_credentials_are_401_problems() {
    let t = TestServer::start().await;
    t.raw(Request::get("/v1/vaults").body(Body::empty()).unwrap())
        .await
        .assert_problem(
            401,
            "unauthorized",
            "Unauthorized",
            "send `Authorization: Bearer <token>` with an API key (1ck_…) or an access token from POST /v1/auth/api-key-token",
        );
    t.raw(get_with(
        "/v1/vaults",
        "Bearer 1ck_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ))
    .await
    .assert_problem(
        401,
        "unauthorized",
        "Unauthorized",
        "the API key is not valid or was revoked",
    );
    let expired_or_forged = "the access token is not valid or has expired; get a new one from POST /v1/auth/api-key-token";
    t.raw(get_with("/v1/vaults", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"))
        .await
        .assert_problem(401, "unauthorized", "Unauthorized", expired_or_forged);
    t.raw(get_with("/v1/vaults", &format!("Basic {}", t.admin_key)))
        .await
        .assert_problem(
            401,
            "unauthorized",
            "Unauthorized",
            "the Authorization header must be `Bearer <token>` with an API key (1ck_…) or an access token",
        );
    // A token signed by another server (another key) is refused.
    let other = TestServer::start().await;
    let foreign = token_for(&other, &other.admin_key).await;
    let foreign = foreign.body["access_token"].as_str().unwrap();
    t.raw(get_with("/v1/vaults", &format!("Bearer {foreign}")))
        .await
        .assert_problem(401, "unauthorized", "Unauthorized", expired_or_forged);
    // A tampered token is refused.
    let good = token_for(&t, &t.admin_key).await;
    let good = good.body["access_token"].as_str().unwrap().to_owned();
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    t.raw(get_with("/v1/vaults", &format!("Bearer {tampered}")))
        .await
        .assert_problem(401, "unauthorized", "Unauthorized", expired_or_forged);
    token_for(&t, "1ck_wrong").await.assert_problem(
        401,
        "unauthorized",
        "Unauthorized",
        "`api_key` is not a valid API key (1ck_…) or was revoked",
    );
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_by_prefix_and_revocable() {
    let t = TestServer::start().await;
    let created = t
        .call(
            Method::POST,
            "/v1/auth/api-keys",
            Some(json!({ "name": "ci" })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.body["key"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("1ck_"));
    assert_eq!(created.body["key_prefix"], key[..12]);

    let listed = t.call(Method::GET, "/v1/auth/api-keys", None).await;
    assert_eq!(listed.status, 200);
    let keys = listed.body["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    // The full key never appears again.
    assert!(
        !String::from_utf8(listed.raw.clone())
            .unwrap()
            .contains(&key)
    );
    assert!(keys.iter().all(|k| k.get("key").is_none()));

    // The new key and a token issued for it work...
    let token = token_for(&t, &key).await;
    let token = token.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        t.raw(get_with("/v1/vaults", &format!("Bearer {key}")))
            .await
            .status,
        200
    );
    // ...until the key is revoked: then both stop working.
    let revoked = t
        .call(Method::DELETE, &format!("/v1/auth/api-keys/{id}"), None)
        .await;
    assert_eq!(revoked.status, 204);
    assert_eq!(
        t.raw(get_with("/v1/vaults", &format!("Bearer {key}")))
            .await
            .status,
        401
    );
    assert_eq!(
        t.raw(get_with("/v1/vaults", &format!("Bearer {token}")))
            .await
            .status,
        401
    );
    t.call(Method::DELETE, &format!("/v1/auth/api-keys/{id}"), None)
        .await
        .assert_problem(
            404,
            "not-found",
            "Not found",
            "there is no active API key with that id",
        );
}

#[tokio::test]
async fn the_api_key_secret_debug_is_redacted() {
    let key = vault_server::ApiKeySecret::generate().unwrap();
    let debug = format!("{key:?}");
    assert!(!debug.contains(key.expose_secret()));
    assert!(!debug.contains(&key.expose_secret()[12..]));
    assert!(debug.contains("redacted"));
}
