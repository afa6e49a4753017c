//! A throw-away SoftHSM2 token for tests and benchmarks (features `testkit` + `pkcs11`).

use core::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::pkcs11::Pkcs11Pin;

/// Where Debian, Ubuntu, Fedora and source builds put the SoftHSM2 module.
const MODULE_CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The environment variable SoftHSM2 reads its configuration path from.
///
/// # Example
///
/// ```
/// assert_eq!(kms_providers::testkit::SOFTHSM2_CONF, "SOFTHSM2_CONF");
/// ```
pub const SOFTHSM2_CONF: &str = "SOFTHSM2_CONF";

/// Why a SoftHSM2 token could not be made. Never a reason to skip a test: fail with it.
///
/// # Example
///
/// ```
/// use kms_providers::testkit::SoftHsmError;
/// let e = SoftHsmError::NotInstalled { what: "softhsm2-util".into() };
/// assert!(e.to_string().contains("scripts/setup/10-softhsm2.sh"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SoftHsmError {
    /// The module or `softhsm2-util` is missing.
    #[error(
        "SoftHSM2 is not installed ({what} not found): run scripts/setup/10-softhsm2.sh \
         (Debian package softhsm2), or set SOFTHSM2_MODULE to the module's path"
    )]
    NotInstalled {
        /// What was not found.
        what: String,
    },
    /// Creating the temporary directory or configuration failed.
    #[error("cannot prepare the SoftHSM2 token directory: {0}")]
    Io(#[from] std::io::Error),
    /// The OS RNG failed while drawing PINs.
    #[error("cannot draw token PINs: {0}")]
    Rng(getrandom::Error),
    /// `softhsm2-util --init-token` failed.
    #[error("softhsm2-util --init-token failed ({status}): {stderr}")]
    InitToken {
        /// Exit status.
        status: String,
        /// Its error output.
        stderr: String,
    },
}

/// A SoftHSM2 token in a temporary directory with its own configuration file, initialized by
/// `softhsm2-util --init-token` with random PINs. Removed when dropped.
///
/// SoftHSM2 reads its configuration path from the `SOFTHSM2_CONF` environment variable once,
/// when the module is initialized (the first [`Pkcs11Provider`](crate::Pkcs11Provider) built on
/// it in the process). Set the variable to [`conf_path`](Self::conf_path) before that, while
/// the process is still single-threaded or from one initializer that every test waits for;
/// this crate cannot do it for you without `unsafe` (`std::env::set_var`). One token per process
/// is therefore the rule: create every key you need on it under different labels.
///
/// # Example
///
/// ```no_run
/// use kms_providers::testkit::SoftHsmToken;
///
/// let token = SoftHsmToken::create("mpc-vault-test")?;
/// // In a test binary's single initializer (see crates/kms-providers/tests/integration/):
/// // unsafe { std::env::set_var("SOFTHSM2_CONF", token.conf_path()) };
/// let builder = token.provider_builder("hsm").key_label("kek-hsm");
/// # Ok::<(), kms_providers::testkit::SoftHsmError>(())
/// ```
pub struct SoftHsmToken {
    dir: TempDir,
    conf: PathBuf,
    module: PathBuf,
    label: String,
    user_pin: Pkcs11Pin,
}

impl fmt::Debug for SoftHsmToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftHsmToken")
            .field("dir", &self.dir.path())
            .field("module", &self.module)
            .field("label", &self.label)
            .field("user_pin", &self.user_pin)
            .finish()
    }
}

/// Finds the SoftHSM2 module: `SOFTHSM2_MODULE` if set, else the usual install paths.
///
/// # Errors
///
/// [`SoftHsmError::NotInstalled`] when no module exists.
///
/// # Example
///
/// ```no_run
/// let module = kms_providers::testkit::softhsm_module()?;
/// # Ok::<(), kms_providers::testkit::SoftHsmError>(())
/// ```
pub fn softhsm_module() -> Result<PathBuf, SoftHsmError> {
    if let Some(path) = std::env::var_os("SOFTHSM2_MODULE") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(SoftHsmError::NotInstalled {
                what: format!("SOFTHSM2_MODULE={}", path.display()),
            })
        };
    }
    MODULE_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| SoftHsmError::NotInstalled {
            what: "libsofthsm2.so".into(),
        })
}

fn random_pin() -> Result<String, SoftHsmError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(SoftHsmError::Rng)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `softhsm2-util --init-token` with fresh random PINs; returns the user PIN.
fn init_token(conf: &Path, label: &str) -> Result<Pkcs11Pin, SoftHsmError> {
    let so_pin = random_pin()?;
    let user_pin = random_pin()?;
    // The PINs go to a child process on its command line: acceptable for a throw-away test
    // token that only this user can read.
    let output = Command::new("softhsm2-util")
        .env(SOFTHSM2_CONF, conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            &so_pin,
            "--pin",
            &user_pin,
        ])
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SoftHsmError::NotInstalled {
                    what: "softhsm2-util".into(),
                }
            } else {
                SoftHsmError::Io(e)
            }
        })?;
    if !output.status.success() {
        return Err(SoftHsmError::InitToken {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(Pkcs11Pin::new(user_pin))
}

impl SoftHsmToken {
    /// Creates the directory, the configuration and the token.
    ///
    /// # Errors
    ///
    /// [`SoftHsmError`] when SoftHSM2 is missing or the token cannot be initialized.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let token = kms_providers::testkit::SoftHsmToken::create("t")?;
    /// assert_eq!(token.label(), "t");
    /// # Ok::<(), kms_providers::testkit::SoftHsmError>(())
    /// ```
    pub fn create(label: &str) -> Result<Self, SoftHsmError> {
        Self::create_in(std::env::temp_dir(), label)
    }

    /// As [`create`](Self::create), with the temporary directory inside `parent`. Tests that
    /// keep the token in a `static` (which is never dropped) should pass Cargo's
    /// `CARGO_TARGET_TMPDIR`, so leftovers land in the target directory rather than `/tmp`.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let token = kms_providers::testkit::SoftHsmToken::create_in("target/tmp", "t")?;
    /// # Ok::<(), kms_providers::testkit::SoftHsmError>(())
    /// ```
    pub fn create_in(parent: impl AsRef<Path>, label: &str) -> Result<Self, SoftHsmError> {
        let module = softhsm_module()?;
        std::fs::create_dir_all(parent.as_ref())?;
        let dir = tempfile::Builder::new()
            .prefix("softhsm2-")
            .tempdir_in(parent)?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens)?;
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )?;
        let user_pin = init_token(&conf, label)?;
        Ok(Self {
            dir,
            conf,
            module,
            label: label.to_owned(),
            user_pin,
        })
    }

    /// Initializes another token in the same token directory and returns its user PIN. Call it
    /// before the module is initialized in this process: SoftHSM2 reads the token directory
    /// when it starts.
    ///
    /// # Errors
    ///
    /// [`SoftHsmError`] when `softhsm2-util` fails.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let token = kms_providers::testkit::SoftHsmToken::create("main")?;
    /// let second_pin = token.init_token("second")?;
    /// # Ok::<(), kms_providers::testkit::SoftHsmError>(())
    /// ```
    pub fn init_token(&self, label: &str) -> Result<Pkcs11Pin, SoftHsmError> {
        init_token(&self.conf, label)
    }

    /// The configuration file to export as `SOFTHSM2_CONF`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let token = kms_providers::testkit::SoftHsmToken::create("t")?;
    /// println!("SOFTHSM2_CONF={}", token.conf_path().display());
    /// # Ok::<(), kms_providers::testkit::SoftHsmError>(())
    /// ```
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    /// The module path.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let token = kms_providers::testkit::SoftHsmToken::create("t")?;
    /// assert!(token.module_path().ends_with("libsofthsm2.so"));
    /// # Ok::<(), kms_providers::testkit::SoftHsmError>(())
    /// ```
    pub fn module_path(&self) -> &Path {
        &self.module
    }

    /// The token label.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let token = kms_providers::testkit::SoftHsmToken::create("t")?;
    /// assert_eq!(token.label(), "t");
    /// # Ok::<(), kms_providers::testkit::SoftHsmError>(())
    /// ```
    pub fn label(&self) -> &str {
        &self.label
    }

    /// A copy of the user PIN.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let token = kms_providers::testkit::SoftHsmToken::create("t")?;
    /// let pin = token.user_pin();
    /// # Ok::<(), kms_providers::testkit::SoftHsmError>(())
    /// ```
    pub fn user_pin(&self) -> Pkcs11Pin {
        Pkcs11Pin::new(self.user_pin.expose_secret())
    }

    /// A provider builder for this token (module, token label, PIN, key creation on) named
    /// `name`; set the key label and build.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f(token: &kms_providers::testkit::SoftHsmToken) -> Result<(), kms_providers::Error> {
    /// let hsm = token.provider_builder("hsm").key_label("kek-1").build().await?;
    /// # Ok(()) }
    /// ```
    pub fn provider_builder(&self, name: &str) -> crate::Pkcs11ProviderBuilder {
        crate::Pkcs11Provider::builder(name)
            .module(&self.module)
            .token_label(&self.label)
            .pin(self.user_pin())
            .create_key_if_missing(true)
    }
}
