//! `local`: software AES-256-GCM KEKs, for development and the embedded default server.

#[cfg(unix)]
mod store;

use core::fmt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use async_trait::async_trait;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::context::WrapContext;
use crate::error::{Error, check_share_len};
use crate::provider::{Health, KeyProvider, KeyRotation, health_probe_context};
use crate::secret::UnwrappedShare;
use crate::wrapped::{
    Algorithm, GCM_NONCE_LEN, GCM_TAG_LEN, KeyId, KeyVersion, ProviderKind, WrappedShare,
    gcm_associated_data,
};

/// The instance names of the embedded default server's three local providers.
///
/// # Example
///
/// ```
/// assert_eq!(kms_providers::EMBEDDED_PROVIDER_NAMES, ["gcp", "aws", "azure"]);
/// ```
pub const EMBEDDED_PROVIDER_NAMES: [&str; 3] = ["gcp", "aws", "azure"];

/// The warning to print, loudly, whenever the embedded providers are in use: three "providers"
/// on one machine give MPC custody no protection at all. See [`single_machine_warning`] for
/// the text with the key directory filled in.
///
/// # Example
///
/// ```
/// assert!(kms_providers::SINGLE_MACHINE_WARNING.starts_with("WARNING"));
/// ```
pub const SINGLE_MACHINE_WARNING: &str = "WARNING: INSECURE KEY CUSTODY. The key providers \
named \"gcp\", \"aws\" and \"azure\" are local software KEKs that all live on this one machine. \
Splitting data keys across them protects nothing: anyone who can read the key directory (this \
machine, a backup, a disk image) can unwrap every share and decrypt every secret. Use them only \
for development and tests; in production configure independent providers (cloud KMS or HSM).";

/// [`SINGLE_MACHINE_WARNING`] naming the key directory the embedded providers use.
///
/// # Example
///
/// ```
/// let text = kms_providers::single_machine_warning(std::path::Path::new("/var/lib/vault/keys"));
/// assert!(text.contains("/var/lib/vault/keys"));
/// ```
pub fn single_machine_warning(key_dir: &Path) -> String {
    format!(
        "{SINGLE_MACHINE_WARNING} Key directory: {}",
        key_dir.display()
    )
}

/// One KEK version in memory. The AES key schedule is wiped on drop (`aes-gcm`'s `zeroize`
/// feature); `Debug` prints the version only; no `Clone`.
pub(crate) struct Kek {
    version: u32,
    cipher: Aes256Gcm,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("version", &self.version)
            .field("key", &format_args!("[REDACTED]"))
            .finish()
    }
}

impl Kek {
    fn new(version: u32, key: &[u8; 32]) -> Self {
        Self {
            version,
            cipher: Aes256Gcm::new(key.into()),
        }
    }
}

/// A KEK supplied from configuration instead of a key directory (for example from a secrets
/// manager that injects it at start-up). The key bytes are zeroized on drop and never printed.
///
/// # Example
///
/// ```
/// use kms_providers::{LocalProvider, StaticKek};
/// use zeroize::Zeroizing;
///
/// let provider = LocalProvider::builder("aws")
///     .static_kek(StaticKek::new(1, Zeroizing::new([0x24; 32])))
///     .build()?;
/// assert_eq!(format!("{:?}", StaticKek::new(1, Zeroizing::new([0x24; 32]))), "StaticKek { version: 1, key: [REDACTED] }");
/// # Ok::<(), kms_providers::Error>(())
/// ```
pub struct StaticKek {
    version: u32,
    key: Zeroizing<[u8; 32]>,
}

impl StaticKek {
    /// A KEK version (1 or more) and its 32 key bytes.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::StaticKek;
    /// # use zeroize::Zeroizing;
    /// let kek = StaticKek::new(2, Zeroizing::new([1; 32]));
    /// assert_eq!(kek.version(), 2);
    /// ```
    pub fn new(version: u32, key: Zeroizing<[u8; 32]>) -> Self {
        Self { version, key }
    }

    /// The version number.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::StaticKek;
    /// # use zeroize::Zeroizing;
    /// assert_eq!(StaticKek::new(5, Zeroizing::new([1; 32])).version(), 5);
    /// ```
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Debug for StaticKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKek")
            .field("version", &self.version)
            .field("key", &format_args!("[REDACTED]"))
            .finish()
    }
}

/// Where the KEKs come from.
#[derive(Clone, Debug)]
enum Source {
    /// The key's own directory, `<key_dir>/<key_name>`.
    Directory(PathBuf),
    /// Configuration: fixed at start-up, cannot rotate from here.
    Static,
}

/// Builds a [`LocalProvider`]; see [`LocalProvider::builder`].
///
/// # Example
///
/// ```
/// use kms_providers::LocalProvider;
///
/// let dir = tempfile::tempdir()?;
/// let provider = LocalProvider::builder("azure")
///     .key_dir(dir.path().join("keys"))
///     .key_name("kek-azure")
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct LocalProviderBuilder {
    name: String,
    key_name: Option<String>,
    key_dir: Option<PathBuf>,
    static_keks: Vec<StaticKek>,
    create_if_missing: bool,
}

impl LocalProviderBuilder {
    /// Keep KEKs in this directory: created `0700` if missing; it must belong to this user (or
    /// root) and not be writable by group or others. Each key gets its own subdirectory, which
    /// must be private (`0700`), holding one `0600` file per version.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::LocalProvider;
    /// let b = LocalProvider::builder("gcp").key_dir("/var/lib/mpc-vault/keys");
    /// ```
    pub fn key_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.key_dir = Some(dir.into());
        self
    }

    /// The key's name: its subdirectory and the key id in wrapped shares. Defaults to the
    /// instance name. Letters, digits, `.`, `_` and `-`, 1 to 64 characters, not starting with
    /// `.`. Two instances given the same directory and key name share one KEK: give each its own.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::LocalProvider;
    /// let b = LocalProvider::builder("gcp").key_name("kek-gcp-2026");
    /// ```
    pub fn key_name(mut self, name: impl Into<String>) -> Self {
        self.key_name = Some(name.into());
        self
    }

    /// Adds a KEK supplied from configuration (instead of a key directory). The highest version
    /// is used for new wraps; all versions unwrap.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{LocalProvider, StaticKek};
    /// # use zeroize::Zeroizing;
    /// let b = LocalProvider::builder("gcp")
    ///     .static_kek(StaticKek::new(1, Zeroizing::new([1; 32])))
    ///     .static_kek(StaticKek::new(2, Zeroizing::new([2; 32])));
    /// ```
    pub fn static_kek(mut self, kek: StaticKek) -> Self {
        self.static_keks.push(kek);
        self
    }

    /// Whether to create the first KEK version when the key directory holds none (default
    /// `true`). Turn it off in production so that a wrong path fails instead of silently
    /// starting a new, empty key.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::LocalProvider;
    /// let b = LocalProvider::builder("gcp").key_dir("/keys").create_if_missing(false);
    /// ```
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Checks the configuration, opens or creates the key directory, checks its permissions and
    /// loads every KEK version. Blocking file I/O: call it at start-up.
    ///
    /// # Errors
    ///
    /// [`Error::InsecureKeyStorage`] naming the file or directory and the fix when permissions
    /// or ownership are unsafe; [`Error::Misconfigured`] for invalid names, both or neither of a
    /// key directory and static keys, duplicate or zero static versions, corrupt key files, or
    /// an empty key directory with `create_if_missing(false)`; I/O errors as
    /// [`Error::PermissionDenied`] or [`Error::Unavailable`].
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Error, LocalProvider};
    /// let err = LocalProvider::builder("gcp").build().unwrap_err();
    /// assert!(matches!(err, Error::Misconfigured { .. }));
    /// ```
    pub fn build(self) -> Result<LocalProvider, Error> {
        let name = self.name;
        check_name(&name, &name, "instance name")?;
        let key_name = self.key_name.unwrap_or_else(|| name.clone());
        check_name(&name, &key_name, "key name")?;
        let key_id = KeyId::new(key_name.clone())
            .map_err(|e| Error::misconfigured(&name, format!("invalid key name: {e}")))?;

        let (source, keys) = match (self.key_dir, self.static_keks.is_empty()) {
            (Some(_), false) => {
                return Err(Error::misconfigured(
                    &name,
                    "configure either a key directory or static KEKs, not both",
                ));
            }
            (None, true) => {
                return Err(Error::misconfigured(
                    &name,
                    "no KEK source: configure a key directory or static KEKs",
                ));
            }
            (None, false) => (Source::Static, static_keys(&name, self.static_keks)?),
            (Some(dir), true) => {
                let key_dir = dir.join(&key_name);
                let keys =
                    open_directory(&name, &dir, &key_dir, &key_name, self.create_if_missing)?;
                (Source::Directory(key_dir), keys)
            }
        };
        Ok(LocalProvider {
            inner: Arc::new(Inner {
                name,
                key_name,
                key_id,
                source,
                keys: RwLock::new(keys),
            }),
            rotation: tokio::sync::Mutex::new(()),
        })
    }
}

fn check_name(provider: &str, value: &str, what: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::misconfigured(
            provider,
            format!(
                "invalid {what} {value:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
            ),
        ))
    }
}

fn static_keys(provider: &str, keks: Vec<StaticKek>) -> Result<BTreeMap<u32, Arc<Kek>>, Error> {
    let mut keys = BTreeMap::new();
    for kek in keks {
        if kek.version == 0 {
            return Err(Error::misconfigured(
                provider,
                "static KEK versions start at 1",
            ));
        }
        if keys.contains_key(&kek.version) {
            return Err(Error::misconfigured(
                provider,
                format!("static KEK version {} is configured twice", kek.version),
            ));
        }
        keys.insert(kek.version, Arc::new(Kek::new(kek.version, &kek.key)));
    }
    Ok(keys)
}

#[cfg(unix)]
fn open_directory(
    provider: &str,
    root: &Path,
    key_dir: &Path,
    key_name: &str,
    create: bool,
) -> Result<BTreeMap<u32, Arc<Kek>>, Error> {
    store::ensure_dir(provider, root, store::DirRule::Root, create)?;
    store::ensure_dir(provider, key_dir, store::DirRule::Key, create)?;
    let keys = store::load_versions(provider, key_dir, key_name)?;
    if !keys.is_empty() {
        return Ok(keys);
    }
    if !create {
        return Err(Error::misconfigured(
            provider,
            format!(
                "no KEK versions in {} and creation is off: check the key directory or restore the keys",
                key_dir.display()
            ),
        ));
    }
    // Whether we or a concurrent process created version 1, reading back gives the winner's.
    store::create_version(provider, key_dir, key_name, 1)?;
    store::load_versions(provider, key_dir, key_name)
}

#[cfg(not(unix))]
fn open_directory(
    provider: &str,
    _root: &Path,
    _key_dir: &Path,
    _key_name: &str,
    _create: bool,
) -> Result<BTreeMap<u32, Arc<Kek>>, Error> {
    Err(Error::misconfigured(
        provider,
        "key directories need Unix permission checks; use static KEKs on this platform",
    ))
}

/// The shared state, behind an `Arc` so blocking file work can run on `spawn_blocking`.
struct Inner {
    name: String,
    key_name: String,
    key_id: KeyId,
    source: Source,
    /// Every loaded version; the last entry is the current one. Never empty.
    keys: RwLock<BTreeMap<u32, Arc<Kek>>>,
}

impl Inner {
    fn current(&self) -> Result<Arc<Kek>, Error> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still
        // consistent because every writer only inserts complete entries.
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.last_key_value()
            .map(|(_, k)| Arc::clone(k))
            .ok_or_else(|| Error::internal(&self.name, "no KEK loaded", None))
    }

    fn get(&self, version: u32) -> Option<Arc<Kek>> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.get(&version).map(Arc::clone)
    }

    fn max_version(&self) -> u32 {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.last_key_value().map_or(0, |(v, _)| *v)
    }

    fn merge(&self, found: BTreeMap<u32, Arc<Kek>>) {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        for (v, k) in found {
            keys.entry(v).or_insert(k);
        }
    }

    /// Re-reads the key directory (blocking) and adds versions created since start-up, by
    /// another process or another instance on the same key.
    #[cfg(unix)]
    fn rescan(&self) -> Result<(), Error> {
        if let Source::Directory(dir) = &self.source {
            let found = store::load_versions(&self.name, dir, &self.key_name)?;
            self.merge(found);
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn rescan(&self) -> Result<(), Error> {
        Ok(())
    }

    #[cfg(unix)]
    fn rotate_blocking(&self) -> Result<u32, Error> {
        let Source::Directory(dir) = &self.source else {
            return Err(static_rotation_error(&self.name));
        };
        self.rescan()?;
        let next = self.max_version().checked_add(1).ok_or_else(|| {
            Error::misconfigured(&self.name, "the KEK has reached the last version number")
        })?;
        // If another process created `next` first, its key becomes `next` and ours is
        // discarded; either way `next` exists and is newer than anything we had.
        store::create_version(&self.name, dir, &self.key_name, next)?;
        self.rescan()?;
        Ok(self.max_version())
    }

    #[cfg(not(unix))]
    fn rotate_blocking(&self) -> Result<u32, Error> {
        Err(static_rotation_error(&self.name))
    }
}

fn static_rotation_error(provider: &str) -> Error {
    Error::misconfigured(
        provider,
        "KEKs supplied from configuration are rotated by adding a higher version to the configuration",
    )
}

/// A software KEK provider: AES-256-GCM with a fresh random 96-bit nonce per wrap and the
/// wrapped form's header plus the [`WrapContext`] as associated data.
///
/// KEKs live in a key directory (one private file per version, created on first use) or come
/// from configuration ([`StaticKek`]). Several independent instances can run side by side, each
/// with its own key; the embedded default server runs three ([`LocalProvider::embedded_defaults`])
/// and must print [`single_machine_warning`].
///
/// Random nonces are safe for about 2^32 wraps per KEK version (NIST SP 800-38D); rotate long
/// before that.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{KeyProvider, LocalProvider, WrapContext};
///
/// let dir = tempfile::tempdir()?;
/// let gcp = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// let ctx = WrapContext::new("vault-1", "api/token", 4, 1, "shamir-2-of-3")?;
/// let wrapped = gcp.wrap(&[9; 32], &ctx).await?;
///
/// // Any other context fails.
/// let moved = WrapContext::new("vault-1", "api/token", 5, 1, "shamir-2-of-3")?;
/// assert!(gcp.unwrap(&wrapped, &moved).await.is_err());
/// # Ok(()) }
/// ```
pub struct LocalProvider {
    inner: Arc<Inner>,
    /// Serializes rotations in this process (other processes are handled by `link(2)`).
    rotation: tokio::sync::Mutex<()>,
}

impl LocalProvider {
    /// Starts configuring an instance with this name (the name errors carry).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::LocalProvider;
    /// let dir = tempfile::tempdir()?;
    /// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(name: impl Into<String>) -> LocalProviderBuilder {
        LocalProviderBuilder {
            name: name.into(),
            key_name: None,
            key_dir: None,
            static_keks: Vec::new(),
            create_if_missing: true,
        }
    }

    /// The embedded default server's three providers, named `gcp`, `aws` and `azure`, each
    /// with its own KEK in `key_dir`. Whoever uses them must show [`single_machine_warning`].
    ///
    /// # Errors
    ///
    /// As [`LocalProviderBuilder::build`].
    ///
    /// # Example
    ///
    /// ```
    /// use kms_providers::{KeyProvider, LocalProvider};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let providers = LocalProvider::embedded_defaults(dir.path())?;
    /// let names: Vec<&str> = providers.iter().map(|p| p.name()).collect();
    /// assert_eq!(names, ["gcp", "aws", "azure"]);
    /// eprintln!("{}", kms_providers::single_machine_warning(dir.path()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn embedded_defaults(key_dir: impl AsRef<Path>) -> Result<Vec<LocalProvider>, Error> {
        EMBEDDED_PROVIDER_NAMES
            .iter()
            .map(|name| {
                LocalProvider::builder(*name)
                    .key_dir(key_dir.as_ref())
                    .build()
            })
            .collect()
    }

    /// The key's directory, when KEKs live in a key directory.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::LocalProvider;
    /// let dir = tempfile::tempdir()?;
    /// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert_eq!(p.key_directory(), Some(dir.path().join("gcp").as_path()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key_directory(&self) -> Option<&Path> {
        match &self.inner.source {
            Source::Directory(d) => Some(d),
            Source::Static => None,
        }
    }

    /// The version new wraps use.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{KeyVersion, LocalProvider};
    /// let dir = tempfile::tempdir()?;
    /// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert_eq!(p.current_version(), KeyVersion::from_number(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn current_version(&self) -> KeyVersion {
        KeyVersion::from_number(self.inner.max_version())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| {
                Error::internal(
                    &self.inner.name,
                    "key-directory task failed",
                    Some(Box::new(e)),
                )
            })?
    }

    fn wrap_with(
        &self,
        kek: &Kek,
        share: &[u8],
        context: &WrapContext,
    ) -> Result<WrappedShare, Error> {
        let name = &self.inner.name;
        let version = KeyVersion::from_number(kek.version);
        let mut nonce = [0u8; GCM_NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::rng(name, e))?;
        let aad = gcm_associated_data(ProviderKind::Local, &self.inner.key_id, &version, context);
        // Reserve room for the tag up front so encryption never reallocates and leaves a copy
        // of the plaintext in freed memory; the buffer is wiped if anything fails.
        let mut buf = Zeroizing::new(Vec::with_capacity(share.len() + GCM_TAG_LEN));
        buf.extend_from_slice(share);
        kek.cipher
            .encrypt_in_place(&nonce.into(), &aad, &mut *buf)
            .map_err(|_| Error::internal(name, "AES-GCM encryption failed", None))?;
        // The buffer now holds ciphertext and tag, which are not secret.
        let blob = core::mem::take(&mut *buf);
        WrappedShare::new(
            ProviderKind::Local,
            self.inner.key_id.clone(),
            version,
            Algorithm::Aes256Gcm,
            nonce.to_vec(),
            blob,
        )
        .map_err(|e| Error::internal(name, "wrapped share out of bounds", Some(Box::new(e))))
    }
}

impl fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProvider")
            .field("name", &self.inner.name)
            .field("key_id", &self.inner.key_id.as_str())
            .field("source", &self.inner.source)
            .field("versions", &self.inner.max_version())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl KeyProvider for LocalProvider {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Local
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        check_share_len(&self.inner.name, share)?;
        let kek = self.inner.current()?;
        self.wrap_with(&kek, share, context)
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        let name = &self.inner.name;
        if wrapped.kind() != ProviderKind::Local {
            return Err(Error::WrongProviderKind {
                provider: name.clone(),
                expected: ProviderKind::Local,
                found: wrapped.kind(),
            });
        }
        if wrapped.algorithm() != Algorithm::Aes256Gcm {
            return Err(Error::invalid_input(
                name,
                format!("local providers do not use {}", wrapped.algorithm()),
            ));
        }
        if wrapped.key_id() != &self.inner.key_id {
            return Err(Error::unknown_key(name, wrapped.key_id().as_str(), None));
        }
        let unknown = || {
            Error::unknown_key(
                name,
                wrapped.key_id().as_str(),
                Some(wrapped.key_version().as_str()),
            )
        };
        let version = wrapped.key_version().as_number().ok_or_else(unknown)?;
        let kek = match self.inner.get(version) {
            Some(k) => k,
            None => {
                // Only a version newer than ours can have appeared since start-up (rotation by
                // another process); anything else is unknown without touching the disk.
                if version > self.inner.max_version() {
                    self.blocking(Inner::rescan).await?;
                }
                self.inner.get(version).ok_or_else(unknown)?
            }
        };
        let aad = gcm_associated_data(
            ProviderKind::Local,
            wrapped.key_id(),
            wrapped.key_version(),
            context,
        );
        let nonce: [u8; GCM_NONCE_LEN] = wrapped
            .nonce()
            .try_into()
            .map_err(|_| Error::internal(name, "GCM share without a 96-bit nonce", None))?;
        let mut buf = Zeroizing::new(wrapped.blob().to_vec());
        // aes-gcm checks the tag (in constant time) before decrypting: on failure the buffer
        // never holds plaintext.
        kek.cipher
            .decrypt_in_place(&nonce.into(), &aad, &mut *buf)
            .map_err(|_| Error::auth_failed(name, None))?;
        Ok(UnwrappedShare::new(buf))
    }

    async fn health(&self) -> Result<Health, Error> {
        let name = &self.inner.name;
        let ctx = health_probe_context();
        let probe = [0x5a_u8; 32];
        let kek = self.inner.current()?;
        let wrapped = self.wrap_with(&kek, &probe, &ctx)?;
        let back = self.unwrap(&wrapped, &ctx).await?;
        if !bool::from(back.expose_secret().ct_eq(&probe)) {
            return Err(Error::internal(
                name,
                "health probe unwrapped to different bytes",
                None,
            ));
        }
        Ok(Health::new(
            name.clone(),
            ProviderKind::Local,
            self.inner.key_id.clone(),
            KeyVersion::from_number(kek.version),
        ))
    }
}

#[async_trait]
impl KeyRotation for LocalProvider {
    /// Writes a new KEK version file and makes it current. In-process rotations are serialized;
    /// a rotation racing another process ends on whichever new version won the race.
    async fn rotate(&self) -> Result<KeyVersion, Error> {
        if matches!(self.inner.source, Source::Static) {
            return Err(static_rotation_error(&self.inner.name));
        }
        let _guard = self.rotation.lock().await;
        let v = self.blocking(Inner::rotate_blocking).await?;
        Ok(KeyVersion::from_number(v))
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn ctx() -> WrapContext {
        WrapContext::new("v", "p", 1, 1, "m").unwrap()
    }

    #[tokio::test]
    async fn creates_private_files_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("keys");
        let p = LocalProvider::builder("gcp")
            .key_dir(&root)
            .build()
            .unwrap();
        let w = p.wrap(b"secret share", &ctx()).await.unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("gcp")), 0o700);
        assert_eq!(mode(&root.join("gcp/v0000000001.kek")), 0o600);
        drop(p);
        // A restart reads the same KEK back.
        let p = LocalProvider::builder("gcp")
            .key_dir(&root)
            .build()
            .unwrap();
        assert_eq!(
            p.unwrap(&w, &ctx()).await.unwrap().expose_secret(),
            b"secret share"
        );
    }

    #[tokio::test]
    async fn refuses_insecure_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("keys");
        drop(
            LocalProvider::builder("gcp")
                .key_dir(&root)
                .build()
                .unwrap(),
        );
        let file = root.join("gcp/v0000000001.kek");

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalProvider::builder("gcp")
            .key_dir(&root)
            .build()
            .unwrap_err();
        match &err {
            Error::InsecureKeyStorage {
                path,
                fix,
                provider,
                ..
            } => {
                assert_eq!(path, &file);
                assert_eq!(fix, &format!("chmod 600 {}", file.display()));
                assert_eq!(provider, "gcp");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("mode 0644"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

        // The key's own directory must be private.
        let key_dir = root.join("gcp");
        std::fs::set_permissions(&key_dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let err = LocalProvider::builder("gcp")
            .key_dir(&root)
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, Error::InsecureKeyStorage { path, fix, .. }
                if path == &key_dir && fix == &format!("chmod 700 {}", key_dir.display())),
            "{err}"
        );
        std::fs::set_permissions(&key_dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        // The configured directory may be listable (like ~/.ssh for ssh) but not writable by
        // group or others.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        LocalProvider::builder("gcp")
            .key_dir(&root)
            .build()
            .unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o775)).unwrap();
        let err = LocalProvider::builder("gcp")
            .key_dir(&root)
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, Error::InsecureKeyStorage { path, fix, .. }
                if path == &root && fix == &format!("chmod go-w {}", root.display())),
            "{err}"
        );
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();

        // A symlinked key file is refused.
        std::fs::rename(&file, root.join("gcp/real")).unwrap();
        std::os::unix::fs::symlink(root.join("gcp/real"), &file).unwrap();
        let err = LocalProvider::builder("gcp")
            .key_dir(&root)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InsecureKeyStorage { .. }), "{err}");
    }

    #[tokio::test]
    async fn refuses_to_create_when_told_not_to() {
        let dir = tempfile::tempdir().unwrap();
        let err = LocalProvider::builder("gcp")
            .key_dir(dir.path())
            .create_if_missing(false)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    }

    #[tokio::test]
    async fn static_keys() {
        let p = LocalProvider::builder("aws")
            .static_kek(StaticKek::new(1, Zeroizing::new([1; 32])))
            .static_kek(StaticKek::new(2, Zeroizing::new([2; 32])))
            .build()
            .unwrap();
        assert_eq!(p.current_version(), KeyVersion::from_number(2));
        assert!(matches!(p.rotate().await, Err(Error::Misconfigured { .. })));
        // The same static KEK in another instance unwraps: the key is the configuration.
        let w = p.wrap(b"x", &ctx()).await.unwrap();
        let q = LocalProvider::builder("aws")
            .static_kek(StaticKek::new(2, Zeroizing::new([2; 32])))
            .build()
            .unwrap();
        assert_eq!(q.unwrap(&w, &ctx()).await.unwrap().expose_secret(), b"x");
        let dup = LocalProvider::builder("aws")
            .static_kek(StaticKek::new(1, Zeroizing::new([1; 32])))
            .static_kek(StaticKek::new(1, Zeroizing::new([2; 32])))
            .build();
        assert!(matches!(dup, Err(Error::Misconfigured { .. })));
        let zero = LocalProvider::builder("aws")
            .static_kek(StaticKek::new(0, Zeroizing::new([1; 32])))
            .build();
        assert!(matches!(zero, Err(Error::Misconfigured { .. })));
    }

    #[tokio::test]
    async fn names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(65)] {
            let err = LocalProvider::builder("gcp")
                .key_dir(dir.path())
                .key_name(bad)
                .build()
                .unwrap_err();
            assert!(matches!(err, Error::Misconfigured { .. }), "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn another_process_rotation_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalProvider::builder("gcp")
            .key_dir(dir.path())
            .build()
            .unwrap();
        let b = LocalProvider::builder("gcp")
            .key_dir(dir.path())
            .build()
            .unwrap();
        assert_eq!(b.rotate().await.unwrap(), KeyVersion::from_number(2));
        let w = b.wrap(b"new", &ctx()).await.unwrap();
        // `a` loaded version 1 only; it finds version 2 on disk when asked for it.
        assert_eq!(a.unwrap(&w, &ctx()).await.unwrap().expose_secret(), b"new");
        // Both rotating concurrently end on distinct, existing versions.
        let (x, y) = tokio::join!(a.rotate(), b.rotate());
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(x.as_number().unwrap() >= 3 && y.as_number().unwrap() >= 3);
    }

    #[test]
    fn debug_leaks_no_key() {
        let p = LocalProvider::builder("aws")
            .static_kek(StaticKek::new(1, Zeroizing::new([0xC3; 32])))
            .build()
            .unwrap();
        let s = format!("{p:?} {:?}", StaticKek::new(1, Zeroizing::new([0xC3; 32])));
        assert!(
            !s.contains("195") && !s.to_lowercase().contains("c3"),
            "{s}"
        );
    }
}
