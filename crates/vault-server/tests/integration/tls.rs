//! TLS with rustls when a certificate and key are configured.

use std::sync::Arc;

use crate::support::LiveServer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use vault_server::{Config, ConfigError, VaultServer};

fn self_signed(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    rcgen::CertifiedKey<rcgen::KeyPair>,
) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key, certified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_speaks_tls_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, certified) = self_signed(dir.path());
    let config = Config::from_toml_str(&format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    ))
    .unwrap()
    .with_data_dir(dir.path().join("data"));
    assert_eq!(config.tls_cert_file(), Some(cert.as_path()));
    let server = VaultServer::open(config).await.unwrap();
    let live = LiveServer::serve(server).await;
    let addr = live.addr;

    let mut roots = RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client));

    // A plain-HTTP request on the TLS port gets no HTTP answer (the handshake fails).
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"));

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains(r#""status":"ok""#), "{answer}");

    live.shutdown().await;
}

#[test]
fn tls_settings_are_validated_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = self_signed(dir.path());
    let err = Config::from_toml_str(&format!(
        "[tls]\ncert_file = {:?}\n",
        cert.display().to_string()
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration field `tls.key_file`: is required with tls.cert_file"
    );
    let missing = dir.path().join("nope.pem");
    let err = Config::from_toml_str(&format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        missing.display().to_string(),
        key.display().to_string()
    ))
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::Invalid { ref field, .. } if field == "tls.cert_file"),
        "{err}"
    );
    // A key that does not belong to the certificate.
    let other = tempfile::tempdir().unwrap();
    let (_, other_key, _) = self_signed(other.path());
    let err = Config::from_toml_str(&format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert.display().to_string(),
        other_key.display().to_string()
    ))
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::Invalid { ref field, .. } if field == "tls.key_file"),
        "{err}"
    );
}
