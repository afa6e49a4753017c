//! A server on a temporary data directory, and helpers to call it in process.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use vault_server::{Config, VaultServer};

/// A server listening on a real socket on 127.0.0.1 (a port the OS picks), for the tests that
/// go through the network; `shutdown` stops it gracefully and checks that it ended cleanly.
pub(crate) struct LiveServer {
    pub(crate) addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
}

impl LiveServer {
    pub(crate) async fn serve(server: VaultServer) -> LiveServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        LiveServer {
            addr,
            stop,
            serving,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn http_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) async fn shutdown(self) {
        self.stop.send(()).unwrap();
        self.serving.await.unwrap();
    }
}

pub(crate) struct TestServer {
    pub(crate) server: VaultServer,
    pub(crate) admin_key: String,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) raw: Vec<u8>,
}

impl Answer {
    /// Asserts the answer is exactly this problem document.
    #[track_caller]
    pub(crate) fn assert_problem(&self, status: u16, slug: &str, title: &str, detail: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.headers.get("content-type").unwrap(),
            "application/problem+json"
        );
        assert_eq!(
            self.body,
            json!({
                "type": format!("urn:mpc-vault:problem:{slug}"),
                "title": title,
                "status": status,
                "detail": detail,
            })
        );
    }

    /// Asserts the answer is a problem of this status and type (detail not pinned).
    #[track_caller]
    pub(crate) fn assert_problem_type(&self, status: u16, slug: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.headers.get("content-type").unwrap(),
            "application/problem+json"
        );
        assert_eq!(
            self.body["type"],
            format!("urn:mpc-vault:problem:{slug}"),
            "body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        TestServer::with_config(|c| c).await
    }

    pub(crate) async fn with_config(adjust: impl FnOnce(Config) -> Config) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let config = adjust(Config::default_config().with_data_dir(dir.path()));
        let server = VaultServer::open(config).await.unwrap();
        let admin_key = server.bootstrap_admin_key().await.unwrap().unwrap();
        TestServer {
            server,
            admin_key: admin_key.expose_secret().to_owned(),
            dir,
        }
    }

    pub(crate) async fn raw(&self, request: Request<Body>) -> Answer {
        let response = self.server.app().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let body = if raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw).unwrap_or(Value::Null)
        };
        Answer {
            status,
            headers,
            body,
            raw,
        }
    }

    pub(crate) async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Answer {
        self.call_with(method, uri, body, &[]).await
    }

    pub(crate) async fn call_with(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.admin_key));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        };
        self.raw(request).await
    }

    /// Creates a vault (with a custody mode if given) and returns its id.
    pub(crate) async fn vault(&self, mode: Option<&str>) -> String {
        let mut body = json!({ "name": "test vault" });
        if let Some(mode) = mode {
            body["mpc_custody"] = json!(mode);
        }
        let answer = self.call(Method::POST, "/v1/vaults", Some(body)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn put(&self, vault: &str, path: &str, value: &str) -> Answer {
        self.call(
            Method::PUT,
            &format!("/v1/vaults/{vault}/secrets/{path}"),
            Some(json!({ "value": value })),
        )
        .await
    }

    pub(crate) async fn get(&self, vault: &str, path: &str, share: Option<&str>) -> Answer {
        let headers: Vec<(&str, &str)> = share.map(|s| ("X-Client-Share", s)).into_iter().collect();
        self.call_with(
            Method::GET,
            &format!("/v1/vaults/{vault}/secrets/{path}"),
            None,
            &headers,
        )
        .await
    }

    /// How many secret versions are stored in the vault (to prove nothing was written).
    pub(crate) async fn version_count(&self, vault: &str) -> usize {
        let answer = self
            .call(Method::GET, &format!("/v1/vaults/{vault}/secrets"), None)
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        let mut total = 0;
        for secret in answer.body["secrets"].as_array().unwrap() {
            let path = secret["path"].as_str().unwrap();
            let versions = self
                .call(
                    Method::GET,
                    &format!("/v1/vaults/{vault}/secret-versions/{path}"),
                    None,
                )
                .await;
            total += versions.body["versions"].as_array().unwrap().len();
        }
        total
    }
}

/// The environment variable the PKCS#11 tests' configuration names with `pin_env`.
#[cfg(feature = "pkcs11")]
pub(crate) const PKCS11_PIN_ENV: &str = "MPCVAULT_TEST_PKCS11_PIN";

#[cfg(feature = "pkcs11")]
/// The SoftHSM2 token for this test binary, with `SOFTHSM2_CONF` and [`PKCS11_PIN_ENV`]
/// exported. Fails the calling test loudly if SoftHSM2 is missing:
/// scripts/setup/10-softhsm2.sh installs it.
pub(crate) fn softhsm() -> &'static kms_providers::testkit::SoftHsmToken {
    static TOKEN: std::sync::OnceLock<kms_providers::testkit::SoftHsmToken> =
        std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        // A static is never dropped, so the token directory outlives the run: keep it under
        // the target directory, which `cargo clean` empties, rather than in /tmp.
        let token = kms_providers::testkit::SoftHsmToken::create_in(
            env!("CARGO_TARGET_TMPDIR"),
            "vault-server-tests",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        export_softhsm_env(&token);
        token
    })
}

/// Exports `SOFTHSM2_CONF` (SoftHSM2 reads its configuration path only from the environment,
/// once, when the module is initialized) and the user PIN under [`PKCS11_PIN_ENV`] (the server
/// reads PINs only from the environment).
#[cfg(feature = "pkcs11")]
#[allow(unsafe_code)] // The one way to hand SoftHSM2 its configuration; see the SAFETY note.
fn export_softhsm_env(token: &kms_providers::testkit::SoftHsmToken) {
    // SAFETY: `set_var` is unsound only if another thread reads the environment through libc at
    // the same time. Rust-side reads (`std::env`) take std's environment lock, which `set_var`
    // takes too. Of the C code in this binary, the PKCS#11 module is loaded only after
    // `softhsm()` returns (every PKCS#11 test calls it first, and `OnceLock` makes the others
    // wait); SQLite reads `SQLITE_TMPDIR`/`TMPDIR` only when it creates a temporary file, which
    // the tests' small databases do not need. These are the only writes to the environment in
    // this test binary.
    unsafe {
        std::env::set_var(kms_providers::testkit::SOFTHSM2_CONF, token.conf_path());
        std::env::set_var(PKCS11_PIN_ENV, token.user_pin().expose_secret());
    }
}
