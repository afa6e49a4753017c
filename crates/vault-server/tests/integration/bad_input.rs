//! The bad-input table: each request answers its documented 4xx problem and writes nothing.

use axum::body::Body;
use axum::http::{Method, Request};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::support::TestServer;

struct Case {
    name: &'static str,
    request: Request<Body>,
    status: u16,
    slug: &'static str,
    /// The whole `detail`, where it is pinned.
    detail: Option<&'static str>,
}

fn req(t: &TestServer, method: Method, uri: String) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", t.admin_key))
}

fn json_req(t: &TestServer, method: Method, uri: String, body: impl Into<Body>) -> Request<Body> {
    req(t, method, uri)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn flip_share_byte(share: &str) -> String {
    let mut bytes = STANDARD.decode(share).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    STANDARD.encode(bytes)
}

#[tokio::test]
async fn every_bad_input_is_a_documented_4xx_and_writes_nothing() {
    let t = TestServer::with_config(|c| c.with_max_value_bytes(1024)).await;
    let std_vault = t.vault(None).await;
    let client_vault = t.vault(Some("2of3_client_custody")).await;
    let put1 = t.put(&client_vault, "app/key", "v1").await;
    let share1 = put1.body["client_share"].as_str().unwrap().to_owned();
    let put2 = t.put(&client_vault, "app/key", "v2").await;
    let share2 = put2.body["client_share"].as_str().unwrap().to_owned();
    let other = t.put(&client_vault, "app/other", "o").await;
    let other_share = other.body["client_share"].as_str().unwrap().to_owned();
    assert_eq!(t.put(&std_vault, "plain", "p").await.status, 201);

    let secret = |v: &str, p: &str| format!("/v1/vaults/{v}/secrets/{p}");
    let get_share = |share: &str| {
        req(&t, Method::GET, secret(&client_vault, "app/key"))
            .header("x-client-share", share)
            .body(Body::empty())
            .unwrap()
    };
    let put_body =
        |body: &str| json_req(&t, Method::PUT, secret(&std_vault, "new"), body.to_owned());
    let long_path = vec!["a"; 300].join("/");
    let mut cases = vec![
        Case {
            name: "client share missing",
            request: req(&t, Method::GET, secret(&client_vault, "app/key"))
                .body(Body::empty())
                .unwrap(),
            status: 400,
            slug: "client-share-missing",
            detail: Some(
                "this custody mode needs the client share of slot 3 to open or repair a secret: send the `client_share` returned when this version was written, in the `X-Client-Share` header",
            ),
        },
        Case {
            name: "malformed base64 share",
            request: get_share("!!!not-base64!!!"),
            status: 400,
            slug: "client-share-malformed",
            detail: None,
        },
        Case {
            name: "wrong-length share",
            request: get_share(&STANDARD.encode([1u8; 10])),
            status: 400,
            slug: "client-share-malformed",
            detail: None,
        },
        Case {
            name: "share of another version",
            request: get_share(&share1),
            status: 403,
            slug: "client-share-foreign",
            detail: None,
        },
        Case {
            name: "share of another secret",
            request: get_share(&other_share),
            status: 403,
            slug: "client-share-foreign",
            detail: None,
        },
        Case {
            name: "wrong share (right tag, wrong bytes)",
            request: get_share(&flip_share_byte(&share2)),
            status: 403,
            slug: "client-share-wrong",
            detail: None,
        },
        Case {
            name: "share for a mode without a client slot",
            request: req(&t, Method::GET, secret(&std_vault, "plain"))
                .header("x-client-share", share2.as_str())
                .body(Body::empty())
                .unwrap(),
            status: 400,
            slug: "client-share-unexpected",
            detail: None,
        },
        Case {
            name: "non-ASCII client share header",
            request: req(&t, Method::GET, secret(&client_vault, "app/key"))
                .header(
                    "x-client-share",
                    axum::http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
                )
                .body(Body::empty())
                .unwrap(),
            status: 400,
            slug: "client-share-malformed",
            detail: None,
        },
        Case {
            name: "dot-dot segment",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "a/../b"),
                r#"{"value":"x"}"#,
            ),
            status: 400,
            slug: "invalid-path",
            detail: Some(
                "the secret path has a `..` segment; a path is segments of letters, digits, `-`, `_` and `.` separated by single `/`, with no leading or trailing slash and no `.` or `..` segment",
            ),
        },
        Case {
            name: "percent-encoded dot-dot",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "%2e%2e/etc"),
                r#"{"value":"x"}"#,
            ),
            status: 400,
            slug: "invalid-path",
            detail: None,
        },
        Case {
            name: "percent-encoded slash dot-dot",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "a%2F..%2Fb"),
                r#"{"value":"x"}"#,
            ),
            status: 400,
            slug: "invalid-path",
            detail: None,
        },
        Case {
            name: "single dot segment",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "a/./b"),
                r#"{"value":"x"}"#,
            ),
            status: 400,
            slug: "invalid-path",
            detail: None,
        },
        Case {
            name: "leading slash",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "/a"),
                r#"{"value":"x"}"#,
            ),
            status: 400,
            slug: "invalid-path",
            detail: None,
        },
        Case {
            name: "trailing slash",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "a/"),
                r#"{"value":"x"}"#,
            ),
            status: 400,
            slug: "invalid-path",
            detail: None,
        },
        Case {
            name: "empty segment",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "a//b"),
                r#"{"value":"x"}"#,
            ),
            status: 400,
            slug: "invalid-path",
            detail: None,
        },
        Case {
            name: "space in path",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "a%20b"),
                r#"{"value":"x"}"#,
            ),
            status: 400,
            slug: "invalid-path",
            detail: None,
        },
        Case {
            name: "invalid UTF-8 in path",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "a%ff"),
                r#"{"value":"x"}"#,
            ),
            status: 400,
            slug: "invalid-path",
            detail: None,
        },
        Case {
            name: "overlong path",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, &long_path),
                r#"{"value":"x"}"#,
            ),
            status: 400,
            slug: "invalid-path",
            detail: Some("the secret path is 599 bytes long; the limit is 512"),
        },
        Case {
            name: "huge body",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "big"),
                format!(r#"{{"value":"{}"}}"#, "x".repeat(200 * 1024)),
            ),
            status: 413,
            slug: "payload-too-large",
            detail: Some(
                "the request body is larger than this server accepts; send a smaller value",
            ),
        },
        Case {
            name: "value over the value limit",
            request: put_body(&format!(r#"{{"value":"{}"}}"#, "x".repeat(1025))),
            status: 413,
            slug: "payload-too-large",
            detail: Some("`value` is 1025 bytes; this server accepts at most 1024"),
        },
        Case {
            name: "invalid UTF-8 in the body",
            request: json_req(
                &t,
                Method::PUT,
                secret(&std_vault, "new"),
                b"{\"value\":\"\xff\"}".to_vec(),
            ),
            status: 400,
            slug: "malformed-body",
            detail: None,
        },
        Case {
            name: "malformed JSON",
            request: put_body(r#"{"value": "#),
            status: 400,
            slug: "malformed-body",
            detail: Some("the body is not valid JSON (at line 1 column 10); send a JSON object"),
        },
        Case {
            name: "wrong type does not echo the value",
            request: put_body(r#"{"value": 987654321}"#),
            status: 400,
            slug: "malformed-body",
            detail: Some("wrong type or value at line 1 column 19: expected a string"),
        },
        Case {
            name: "unknown field",
            request: put_body(r#"{"value": "x", "colour": 1}"#),
            status: 400,
            slug: "malformed-body",
            detail: None,
        },
        Case {
            name: "missing value",
            request: put_body(r#"{"type": "password"}"#),
            status: 400,
            slug: "malformed-body",
            detail: None,
        },
        Case {
            name: "wrong content type",
            request: req(&t, Method::PUT, secret(&std_vault, "new"))
                .header("content-type", "text/plain")
                .body(Body::from(r#"{"value":"x"}"#))
                .unwrap(),
            status: 415,
            slug: "unsupported-media-type",
            detail: Some("send the body as JSON with the header `Content-Type: application/json`"),
        },
        Case {
            name: "bad secret type",
            request: put_body(r#"{"value": "x", "type": "Not A Type"}"#),
            status: 400,
            slug: "validation",
            detail: None,
        },
        Case {
            name: "metadata not an object",
            request: put_body(r#"{"value": "x", "metadata": [1]}"#),
            status: 400,
            slug: "validation",
            detail: Some("`metadata` must be a JSON object"),
        },
        Case {
            name: "expiry in the past",
            request: put_body(r#"{"value": "x", "expires_at": "2001-01-01T00:00:00Z"}"#),
            status: 400,
            slug: "validation",
            detail: Some("`expires_at` is in the past"),
        },
        Case {
            name: "expiry not a timestamp",
            request: put_body(r#"{"value": "x", "expires_at": "tomorrow"}"#),
            status: 400,
            slug: "validation",
            detail: None,
        },
        Case {
            name: "max_access_count zero",
            request: put_body(r#"{"value": "x", "max_access_count": 0}"#),
            status: 400,
            slug: "validation",
            detail: None,
        },
        Case {
            name: "max_access_count negative",
            request: put_body(r#"{"value": "x", "max_access_count": -1}"#),
            status: 400,
            slug: "malformed-body",
            detail: None,
        },
        Case {
            name: "version not a number",
            request: req(
                &t,
                Method::GET,
                format!("/v1/vaults/{client_vault}/secret-version/app/key/latest"),
            )
            .body(Body::empty())
            .unwrap(),
            status: 400,
            slug: "validation",
            detail: Some("the version must be an integer from 1 to 9223372036854775807"),
        },
        Case {
            name: "version above the largest stored version",
            request: req(
                &t,
                Method::POST,
                format!(
                    "/v1/vaults/{client_vault}/secret-version-disable/app/key/9223372036854775808"
                ),
            )
            .body(Body::empty())
            .unwrap(),
            status: 400,
            slug: "validation",
            detail: Some("the version must be an integer from 1 to 9223372036854775807"),
        },
        Case {
            name: "missing auth",
            request: Request::put(secret(&std_vault, "new"))
                .header("content-type", "application/json")
                .body(Body::from(r#"{"value":"x"}"#))
                .unwrap(),
            status: 401,
            slug: "unauthorized",
            detail: None,
        },
        Case {
            name: "wrong token",
            request: Request::put(secret(&std_vault, "new"))
                .header("authorization", "Bearer not-a-token")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"value":"x"}"#))
                .unwrap(),
            status: 401,
            slug: "unauthorized",
            detail: None,
        },
        Case {
            name: "unknown vault",
            request: json_req(
                &t,
                Method::PUT,
                secret("00000000-0000-4000-8000-000000000000", "x"),
                r#"{"value":"x"}"#,
            ),
            status: 404,
            slug: "not-found",
            detail: None,
        },
        Case {
            name: "vault body with wrong types",
            request: json_req(&t, Method::POST, "/v1/vaults".into(), r#"{"name": 7}"#),
            status: 400,
            slug: "malformed-body",
            detail: None,
        },
        Case {
            name: "vault name empty",
            request: json_req(&t, Method::POST, "/v1/vaults".into(), r#"{"name": ""}"#),
            status: 400,
            slug: "validation",
            detail: None,
        },
    ];

    let versions_before = t.version_count(&std_vault).await + t.version_count(&client_vault).await;
    let vaults_before = t.call(Method::GET, "/v1/vaults", None).await.body;
    for case in cases.drain(..) {
        let answer = t.raw(case.request).await;
        assert_eq!(
            answer.status.as_u16(),
            case.status,
            "{}: {}",
            case.name,
            answer.body
        );
        answer.assert_problem_type(case.status, case.slug);
        if let Some(detail) = case.detail {
            assert_eq!(answer.body["detail"], detail, "{}", case.name);
        }
        // No value, share or token is ever echoed.
        let text = String::from_utf8(answer.raw.clone()).unwrap();
        for secret in [&share1, &share2, &other_share, &t.admin_key] {
            assert!(
                !text.contains(secret.as_str()),
                "{} echoed a secret",
                case.name
            );
        }
        assert!(!text.contains("987654321"), "{} echoed a value", case.name);
        assert!(!text.contains("\"v2\""), "{} leaked a value", case.name);
    }
    assert_eq!(
        t.version_count(&std_vault).await + t.version_count(&client_vault).await,
        versions_before
    );
    assert_eq!(
        t.call(Method::GET, "/v1/vaults", None).await.body,
        vaults_before
    );
    // The right share still works after all that.
    assert_eq!(
        t.get(&client_vault, "app/key", Some(&share2)).await.body["value"],
        "v2"
    );
}

#[tokio::test]
async fn a_timeout_is_a_408_problem() {
    // Every provider answers only after 5 s, far past the 200 ms request timeout, so the
    // timeout fires on every machine. (A zero timeout raced the handler: under load a fast
    // read could answer first.)
    use std::sync::Arc;
    use std::time::Duration;

    use kms_providers::{FaultConfig, FaultInjector, KeyProvider, Latency};

    let dir = tempfile::tempdir().unwrap();
    let config = vault_server::Config::default_config()
        .with_data_dir(dir.path())
        .with_request_timeout(Duration::from_millis(200));
    let slow = FaultConfig::new(1).latency(Latency::Fixed(Duration::from_secs(5)));
    let server = vault_server::VaultServer::open_instrumented(config, |_, provider| {
        Arc::new(FaultInjector::new(provider, slow.clone()).unwrap()) as Arc<dyn KeyProvider>
    })
    .await
    .unwrap();
    let admin_key = server.bootstrap_admin_key().await.unwrap().unwrap();
    let t = TestServer {
        server,
        admin_key: admin_key.expose_secret().to_owned(),
        dir,
    };
    let vault = t.vault(None).await;
    let answer = t.put(&vault, "slow", "value").await;
    answer.assert_problem(
        408,
        "timeout",
        "Request timeout",
        "the request took longer than the server's request timeout",
    );
}
