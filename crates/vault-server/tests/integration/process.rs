//! The real `vault-server` binary as a child process, for the tests that need several servers
//! or a `kill -9`.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary cargo built for this test run.
pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_vault-server");

/// How a server process is configured: its data directory (JWT seed, local provider keys and,
/// without a database URL, the SQLite file) and optionally a PostgreSQL URL.
#[derive(Debug, Clone)]
pub(crate) struct ServerSpec {
    pub(crate) data_dir: PathBuf,
    pub(crate) database_url: Option<String>,
}

impl ServerSpec {
    /// The binary with exactly this configuration in its environment (nothing inherited that
    /// could change it).
    ///
    /// The rate limit is off: these servers take the load and crash tests' bursts, which must
    /// measure the store rather than the limiter (the limiter has its own tests).
    pub(crate) fn command(&self) -> Command {
        let config = self.data_dir.with_extension("toml");
        std::fs::write(&config, "[rate_limit]\nenabled = false\n").unwrap();
        let mut command = Command::new(BINARY);
        command
            .env_clear()
            .env("MPCVAULT_CONFIG", &config)
            .env("MPCVAULT_DATA_DIR", &self.data_dir)
            .env("RUST_LOG", "warn");
        if let Some(url) = &self.database_url {
            command.env("MPCVAULT_DATABASE_URL", url);
        }
        command
    }
}

pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) base: String,
    stdout: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts a server on a free port and waits until it answers `/v1/health`.
    pub(crate) async fn start(spec: &ServerSpec, log_dir: &Path) -> ServerProcess {
        let mut last = String::new();
        for attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = log_dir.join(format!("server-{port}-{attempt}.log"));
            let mut child = spec
                .command()
                .env("MPCVAULT_LISTEN", format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"));
            let stdout = Arc::new(Mutex::new(Vec::new()));
            let pipe = child.stdout.take().unwrap();
            let lines = Arc::clone(&stdout);
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            });
            let mut server = ServerProcess {
                child,
                base: format!("http://127.0.0.1:{port}"),
                stdout,
                log,
            };
            if server.wait_healthy(Duration::from_secs(60)).await {
                return server;
            }
            last = server.log_text();
            server.kill();
        }
        panic!("vault-server did not start after 5 attempts; last log:\n{last}");
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> bool {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            let answer = client
                .get(format!("{}/v1/health", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The admin key the server printed on its first start, if it printed one. The key is
    /// printed before the server listens, so once it is healthy the line is in the pipe; the
    /// short wait covers the reader thread.
    pub(crate) async fn printed_admin_key(&self) -> Option<String> {
        for _ in 0..20 {
            let found = self.stdout.lock().unwrap().iter().find_map(|l| {
                l.trim()
                    .strip_prefix("1ck_")
                    .map(|rest| format!("1ck_{rest}"))
            });
            if found.is_some() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no shutdown, no flush, connections cut mid-request.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A small HTTP client for one server and key.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    pub(crate) base: String,
    key: String,
}

impl Client {
    pub(crate) fn new(base: &str, key: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: base.to_owned(),
            key: key.to_owned(),
        }
    }

    /// Sends a request; `Err` if no answer arrived (connection refused or cut).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await?;
        let status = answer.status().as_u16();
        let bytes = answer.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    pub(crate) async fn create_vault(&self, mode: &str) -> String {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/v1/vaults",
                Some(serde_json::json!({ "name": "v", "mpc_custody": mode })),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// The value of one version, or the status it was refused with.
    pub(crate) async fn read_version(
        &self,
        vault: &str,
        path: &str,
        version: u64,
    ) -> Result<String, u16> {
        let (status, body) = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/vaults/{vault}/secret-version/{path}/{version}"),
                None,
            )
            .await
            .map_err(|_| 0u16)?;
        match body["value"].as_str() {
            Some(value) if status == 200 => Ok(value.to_owned()),
            _ => Err(status),
        }
    }

    /// `GET /v1/audit/verify`: the whole chain, its HMACs and checkpoints recomputed by the
    /// server. This client's key must be the audit administrator's (the bootstrap admin key).
    pub(crate) async fn audit_report(&self) -> Value {
        let (status, body) = self
            .send(reqwest::Method::GET, "/v1/audit/verify", None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Every version number of a secret, oldest first.
    pub(crate) async fn version_numbers(&self, vault: &str, path: &str) -> Vec<u64> {
        let (status, body) = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/vaults/{vault}/secret-versions/{path}"),
                None,
            )
            .await
            .unwrap();
        // A secret none of whose writes was stored does not exist.
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{body}");
        body["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect()
    }
}
