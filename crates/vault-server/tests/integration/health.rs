use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn health_needs_no_auth() {
    let t = TestServer::start().await;
    let answer = t
        .raw(Request::get("/v1/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body,
        json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })
    );
    assert!(answer.headers.get("x-request-id").is_some());
    assert_eq!(answer.headers.get("cache-control").unwrap(), "no-store");
}

#[tokio::test]
async fn hsm_health_reports_every_provider() {
    let t = TestServer::start().await;
    let answer = t.call(Method::GET, "/v1/health/hsm", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["status"], "ok");
    let names: Vec<&str> = answer.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["aws", "azure", "gcp"]);
    for p in answer.body["providers"].as_array().unwrap() {
        assert_eq!(p["status"], "ok");
        assert_eq!(p["kind"], "local");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let t = TestServer::start().await;
    t.call(Method::GET, "/v1/nope", None).await.assert_problem(
        404,
        "not-found",
        "Not found",
        "there is no such route; see /v1/openapi.json",
    );
    let answer = t.call(Method::PATCH, "/v1/vaults", None).await;
    answer.assert_problem(
        405,
        "method-not-allowed",
        "Method not allowed",
        "this route does not accept that method; see /v1/openapi.json",
    );
    assert!(answer.headers.get("allow").is_some());
}

#[tokio::test]
async fn jwks_publishes_the_ed25519_key() {
    let t = TestServer::start().await;
    let answer = t
        .raw(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, 200);
    let key = &answer.body["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["x"].as_str().unwrap().len(), 43);
}
