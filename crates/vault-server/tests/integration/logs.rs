//! Logs never hold a secret value, a client share, an API key or a token.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::Method;
use serde_json::json;

use crate::support::TestServer;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log of the whole test binary. A global subscriber, because a thread-local one misses
/// events when callsites are first hit by tests running in parallel on other threads.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
}

#[tokio::test]
async fn a_session_logs_no_secret() {
    let captured = captured();

    let t = TestServer::start().await;
    let token = t
        .call(
            Method::POST,
            "/v1/auth/api-key-token",
            Some(json!({ "api_key": t.admin_key })),
        )
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = t.vault(Some("2of3_client_custody")).await;
    let value = "value-that-must-not-be-logged-7d1e";
    let share = t.put(&v, "db/password", value).await.body["client_share"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        t.get(&v, "db/password", Some(&share)).await.body["value"],
        value
    );
    // Failures are logged too: a wrong share, a bad token.
    let mut wrong = share.clone().into_bytes();
    wrong[50] = if wrong[50] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).unwrap();
    assert_eq!(
        t.get(&v, "db/password", Some(&wrong)).await.status.as_u16() / 100,
        4
    );
    let mut bad = TestServer {
        server: t.server.clone(),
        admin_key: format!("{token}x"),
        dir: tempfile::tempdir().unwrap(),
    };
    assert_eq!(bad.call(Method::GET, "/v1/vaults", None).await.status, 401);
    bad.admin_key = token.clone();
    assert_eq!(bad.call(Method::GET, "/v1/vaults", None).await.status, 200);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("request"),
        "the trace layer logged nothing:\n{logs}"
    );
    for secret in [
        value,
        share.as_str(),
        wrong.as_str(),
        t.admin_key.as_str(),
        token.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}
