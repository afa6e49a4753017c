use axum::body::Body;
use axum::http::Request;

use crate::support::TestServer;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

#[test]
fn the_committed_openapi_document_is_current() {
    let generated = vault_server::openapi_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "crates/vault-server/openapi.json is stale: regenerate it with \
         `UPDATE_OPENAPI=1 cargo test -p vault-server --test integration openapi` and commit it"
    );
}

#[tokio::test]
async fn the_document_is_served_and_is_openapi_3_1() {
    let t = TestServer::start().await;
    let answer = t
        .raw(
            Request::get("/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.raw, vault_server::openapi_json().as_bytes());
    assert_eq!(answer.body["openapi"], "3.1.0");
    // Every documented operation answers problems as application/problem+json.
    for (path, item) in answer.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            for status in ["400", "401", "404", "500"] {
                assert!(
                    responses[status]["content"]["application/problem+json"].is_object(),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
}
