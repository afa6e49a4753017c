use std::collections::BTreeMap;

use vault_server::{Config, ConfigError};

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::load(None, &BTreeMap::new()).unwrap();
    assert_eq!(c.listen().to_string(), "127.0.0.1:8443");
    assert_eq!(c.data_dir(), std::path::Path::new("./mpc-vault-data"));
    assert_eq!(c.max_value_bytes(), 1024 * 1024);
    assert!(c.uses_embedded_providers());
}

#[test]
fn env_overrides_the_file_and_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vault.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\nmax_value_bytes = 2048\n",
    )
    .unwrap();
    let env = BTreeMap::from([("MPCVAULT_LISTEN".to_owned(), "127.0.0.1:9100".to_owned())]);
    let c = Config::load(Some(&file), &env).unwrap();
    assert_eq!(c.listen().port(), 9100);
    assert_eq!(c.max_value_bytes(), 2048);

    let env = BTreeMap::from([("MPCVAULT_MAX_VALUE_BYTES".to_owned(), "lots".to_owned())]);
    let err = Config::load(None, &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration field `MPCVAULT_MAX_VALUE_BYTES`: must be a non-negative integer"
    );
    let err = Config::from_toml_str("max_value_bytes = 0").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration field `max_value_bytes`: must be between 1 and 67108864 (64 MiB)"
    );
    let err = Config::from_toml_str("listen = 5").unwrap_err();
    assert!(
        matches!(err, ConfigError::Parse(ref m) if m.contains("listen")),
        "{err}"
    );
    let err =
        Config::from_toml_str("[providers.gcp]\nbackend = \"local\"\nkey_dri = \"x\"").unwrap_err();
    assert!(err.to_string().contains("key_dri"), "{err}");
}

#[test]
fn providers_are_declared_by_name_and_missing_backends_are_named() {
    let c = Config::from_toml_str(
        "[providers.hsm-a]\nbackend = \"local\"\n[providers.hsm-b]\nbackend = \"local\"\nkey_name = \"kek\"\n",
    )
    .unwrap();
    assert!(!c.uses_embedded_providers());
    assert_eq!(c.providers().keys().collect::<Vec<_>>(), ["hsm-a", "hsm-b"]);

    let err = Config::from_toml_str("[providers.gcp]\nbackend = \"gcp\"\nkey = \"projects/x\"\n")
        .unwrap_err();
    let available = if cfg!(feature = "pkcs11") {
        "local, pkcs11"
    } else {
        "local"
    };
    assert_eq!(
        err.to_string(),
        format!(
            "provider `gcp` uses backend `gcp`, which this build of vault-server does not \
             include (kms-providers has no `gcp` feature yet); available backends: {available}"
        )
    );
    let err =
        Config::from_toml_str("[providers.\"bad name!\"]\nbackend = \"local\"\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid configuration field `providers.bad name!`"),
        "{err}"
    );
    let err = Config::from_toml_str("[providers.x]\nbackend = \"vault\"\n").unwrap_err();
    assert!(err.to_string().contains("vault"), "{err}");
}

#[tokio::test]
async fn config_check_accepts_a_valid_file_and_refuses_a_bad_one() {
    use clap::Parser as _;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[providers.gcp]\nbackend = \"local\"\n").unwrap();
    let cli = vault_server::Cli::parse_from([
        "vault-server",
        "--config",
        good.to_str().unwrap(),
        "config",
        "check",
    ]);
    vault_server::run(cli).await.unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "request_timeout_secs = 0\n").unwrap();
    let cli = vault_server::Cli::parse_from([
        "vault-server",
        "--config",
        bad.to_str().unwrap(),
        "config",
        "check",
    ]);
    let err = vault_server::run(cli).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration field `request_timeout_secs`: must be between 1 and 3600"
    );
}

#[test]
fn resilience_settings_are_global_or_per_provider_and_checked() {
    let c = Config::from_toml_str(
        "[resilience]\ntimeout_ms = 2000\nretry_attempts = 2\n\
         [providers.gcp]\nbackend = \"local\"\ntimeout_ms = 700\nmax_concurrency = 8\n\
         [providers.aws]\nbackend = \"local\"\n",
    )
    .unwrap();
    let gcp = c.resilience("gcp").unwrap();
    assert_eq!(gcp.timeout(), std::time::Duration::from_millis(700));
    assert_eq!(gcp.retry_attempts(), 2);
    assert_eq!(gcp.max_concurrency(), 8);
    let aws = c.resilience("aws").unwrap();
    assert_eq!(aws.timeout(), std::time::Duration::from_secs(2));
    assert_eq!(aws.max_concurrency(), 64);
    // Resilience keys do not stay behind as unknown backend settings.
    assert!(matches!(
        &c.providers()["gcp"],
        vault_server::ProviderConfig::Local { unknown, .. } if unknown.is_empty()
    ));
    // Without a `[providers]` section the global settings apply to the embedded providers.
    let c = Config::from_toml_str("[resilience]\nbreaker_failure_threshold = 3\n").unwrap();
    assert_eq!(
        c.resilience("azure").unwrap().breaker_failure_threshold(),
        3
    );

    for (toml, message) in [
        (
            "[resilience]\ntimeout_ms = 0\n",
            "invalid configuration field `resilience.timeout_ms`: must be between 1 and 600000",
        ),
        (
            "[providers.gcp]\nbackend = \"local\"\nretry_attempts = 0\n",
            "invalid configuration field `providers.gcp.retry_attempts`: must be between 1 and 20",
        ),
        (
            "[providers.gcp]\nbackend = \"local\"\nmax_concurrency = \"lots\"\n",
            "invalid configuration field `providers.gcp.max_concurrency`: must be a non-negative \
             integer",
        ),
        (
            "[resilience]\nretry_base_delay_ms = 500\n\
             [providers.gcp]\nbackend = \"local\"\nretry_max_delay_ms = 100\n",
            "invalid configuration field `providers.gcp.retry_max_delay_ms`: must be at least \
             retry_base_delay_ms (500 ms)",
        ),
    ] {
        let err = Config::from_toml_str(toml).unwrap_err();
        assert_eq!(err.to_string(), message, "{toml}");
    }
    let err = Config::from_toml_str("[resilience]\ntimeout = 5\n").unwrap_err();
    assert!(
        matches!(err, ConfigError::Parse(ref m) if m.contains("timeout")),
        "{err}"
    );
}

#[cfg(feature = "pkcs11")]
#[test]
fn pkcs11_providers_are_checked_and_name_the_field() {
    let good = "[providers.hsm]\nbackend = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n\
                token_label = \"mpc-vault\"\npin_env = \"MPCVAULT_PKCS11_PIN\"\n";
    let c = Config::from_toml_str(good).unwrap();
    assert!(matches!(
        &c.providers()["hsm"],
        vault_server::ProviderConfig::Pkcs11 {
            create_key_if_missing: false,
            ..
        }
    ));
    for (extra_or_replacement, message) in [
        (
            good.replace("module = \"/usr/lib/softhsm/libsofthsm2.so\"\n", ""),
            "invalid configuration field `providers.hsm.module`: is required: the path of the \
             PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so",
        ),
        (
            good.replace("token_label = \"mpc-vault\"\n", ""),
            "invalid configuration field `providers.hsm.token_label`: is required (or \
             `slot_id`): which token holds the key",
        ),
        (
            format!("{good}slot_id = 0\n"),
            "invalid configuration field `providers.hsm.slot_id`: give either `token_label` or \
             `slot_id`, not both",
        ),
        (
            good.replace("pin_env = \"MPCVAULT_PKCS11_PIN\"\n", ""),
            "invalid configuration field `providers.hsm.pin_env`: is required: the name of the \
             environment variable that holds the user PIN, e.g. MPCVAULT_PKCS11_PIN",
        ),
        (
            good.replace("MPCVAULT_PKCS11_PIN", "MY PIN"),
            "invalid configuration field `providers.hsm.pin_env`: must be an environment \
             variable name (letters, digits and `_`)",
        ),
        (
            format!("{good}pin = \"1234\"\n"),
            "invalid configuration field `providers.hsm.pin`: the PIN is never written in the \
             configuration: put it in an environment variable and name that variable with \
             `pin_env`",
        ),
        (
            format!("{good}max_sessions = 0\n"),
            "invalid configuration field `providers.hsm.max_sessions`: must be between 1 and 1024",
        ),
        (
            format!("{good}timeout_ms = 0\n"),
            "invalid configuration field `providers.hsm.timeout_ms`: must be between 1 and 600000",
        ),
    ] {
        let err = Config::from_toml_str(&extra_or_replacement).unwrap_err();
        assert_eq!(err.to_string(), message, "{extra_or_replacement}");
        // The PIN value of the refused `pin` key is never echoed.
        assert!(!err.to_string().contains("1234"));
    }
}

#[cfg(not(feature = "pkcs11"))]
#[test]
fn pkcs11_needs_the_feature() {
    let err = Config::from_toml_str(
        "[providers.hsm]\nbackend = \"pkcs11\"\nmodule = \"/m.so\"\ntoken_label = \"t\"\n\
         pin_env = \"PIN\"\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider `hsm` uses backend `pkcs11`, which this build of vault-server does not include \
         (it was built without the cargo feature `pkcs11`); available backends: local"
    );
}

#[test]
fn a_database_url_selects_postgres_and_its_password_is_never_shown() {
    assert!(
        Config::load(None, &BTreeMap::new())
            .unwrap()
            .database()
            .is_none()
    );
    let env = BTreeMap::from([
        (
            "MPCVAULT_DATABASE_URL".to_owned(),
            "postgres://vault:hunter2-pw@10.0.0.5:6543/vaultdb".to_owned(),
        ),
        (
            "MPCVAULT_DATABASE_MAX_CONNECTIONS".to_owned(),
            "7".to_owned(),
        ),
    ]);
    let c = Config::load(None, &env).unwrap();
    let db = c.database().unwrap();
    assert_eq!(db.get_max_connections(), 7);
    assert_eq!(db.to_string(), "postgres://vault@10.0.0.5:6543/vaultdb");
    assert!(!format!("{c:?}").contains("hunter2-pw"));
    assert!(!format!("{db:?}").contains("hunter2-pw"));

    let c = Config::from_toml_str(
        "database_url = \"postgresql://u@127.0.0.1/d\"\ndatabase_acquire_timeout_secs = 3",
    )
    .unwrap();
    assert_eq!(c.database().unwrap().get_acquire_timeout().as_secs(), 3);
}

#[test]
fn bad_database_settings_are_refused_naming_the_field_not_the_url() {
    let field = |text: &str| match Config::from_toml_str(text) {
        Err(ConfigError::Invalid { field, reason }) => {
            assert!(!reason.contains("hunter2"), "{reason}");
            field
        }
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(
        field("database_url = \"mysql://u:hunter2@h/d\""),
        "database_url"
    );
    assert_eq!(
        field("database_url = \"postgres://u:hunter2@h:notaport/d\""),
        "database_url"
    );
    assert_eq!(
        field("database_url = \"postgres://u@h/d\"\ndatabase_max_connections = 0"),
        "database_max_connections"
    );
    assert_eq!(
        field("database_url = \"postgres://u@h/d\"\ndatabase_acquire_timeout_secs = 0"),
        "database_acquire_timeout_secs"
    );
    // Pool settings without a URL would be silently ignored: refused instead.
    assert_eq!(field("database_max_connections = 5"), "database_url");
}
