//! `pkcs11`: an AES-256 key in any PKCS#11 token (HSM, SoftHSM2), through `cryptoki`.
//!
//! Key versions are separate key objects sharing the key's `CKA_LABEL`; `CKA_ID` holds the
//! version number (big-endian, 1 to 4 bytes). Rotation creates the next object. Wrapping is
//! `CKM_AES_GCM` with a 96-bit IV we draw from the OS RNG (and store in the wrapped form), a
//! 128-bit tag, and the wrapped form's header plus the context as associated data.

use core::fmt;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::context::WrapContext;
use crate::error::{Error, check_share_len};
use crate::provider::{Health, KeyProvider, KeyRotation, health_probe_context};
use crate::secret::UnwrappedShare;
use crate::wrapped::{
    Algorithm, GCM_NONCE_LEN, GCM_TAG_LEN, KeyId, KeyVersion, ProviderKind, WrappedShare,
    gcm_associated_data,
};

/// The user PIN of a PKCS#11 token. Zeroized on drop; `Debug` prints `[REDACTED]`; no `Clone`.
///
/// # Example
///
/// ```
/// use kms_providers::Pkcs11Pin;
///
/// let pin = Pkcs11Pin::new("123456");
/// assert_eq!(format!("{pin:?}"), "Pkcs11Pin([REDACTED])");
/// ```
pub struct Pkcs11Pin(Zeroizing<String>);

impl Pkcs11Pin {
    /// Wraps a PIN read from configuration.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Pkcs11Pin;
    /// let pin = Pkcs11Pin::new(String::from("1234"));
    /// ```
    pub fn new(pin: impl Into<String>) -> Self {
        Self(Zeroizing::new(pin.into()))
    }

    /// The PIN. The one way to read it.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Pkcs11Pin;
    /// assert_eq!(Pkcs11Pin::new("1234").expose_secret(), "1234");
    /// ```
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pkcs11Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pkcs11Pin([REDACTED])")
    }
}

/// Where the PIN comes from.
enum PinSource {
    Missing,
    Value(Pkcs11Pin),
    Env(String),
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("Missing"),
            Self::Value(p) => write!(f, "Value({p:?})"),
            Self::Env(var) => write!(f, "Env({var:?})"),
        }
    }
}

/// Which slot to use.
#[derive(Clone, Debug)]
enum TokenSelector {
    Missing,
    Label(String),
    SlotId(u64),
}

/// Builds a [`Pkcs11Provider`]; see [`Pkcs11Provider::builder`].
///
/// # Example
///
/// ```no_run
/// # async fn f() -> Result<(), kms_providers::Error> {
/// use kms_providers::{Pkcs11Pin, Pkcs11Provider};
///
/// let hsm = Pkcs11Provider::builder("hsm-1")
///     .module("/usr/lib/softhsm/libsofthsm2.so")
///     .token_label("mpc-vault")
///     .pin_from_env("MPC_VAULT_HSM_PIN")
///     .key_label("kek-hsm-1")
///     .max_sessions(8)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use]
pub struct Pkcs11ProviderBuilder {
    name: String,
    module: Option<PathBuf>,
    token: TokenSelector,
    pin: PinSource,
    key_label: Option<String>,
    create_key_if_missing: bool,
    max_sessions: usize,
}

impl Pkcs11ProviderBuilder {
    /// Path of the PKCS#11 module (shared library).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Pkcs11Provider;
    /// let b = Pkcs11Provider::builder("hsm").module("/usr/lib/softhsm/libsofthsm2.so");
    /// ```
    pub fn module(mut self, path: impl Into<PathBuf>) -> Self {
        self.module = Some(path.into());
        self
    }

    /// Use the slot whose token has this label (the usual choice: slot ids can change).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Pkcs11Provider;
    /// let b = Pkcs11Provider::builder("hsm").token_label("mpc-vault");
    /// ```
    pub fn token_label(mut self, label: impl Into<String>) -> Self {
        self.token = TokenSelector::Label(label.into());
        self
    }

    /// Use this slot id.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Pkcs11Provider;
    /// let b = Pkcs11Provider::builder("hsm").slot_id(0);
    /// ```
    pub fn slot_id(mut self, id: u64) -> Self {
        self.token = TokenSelector::SlotId(id);
        self
    }

    /// The user PIN.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Pkcs11Pin, Pkcs11Provider};
    /// let b = Pkcs11Provider::builder("hsm").pin(Pkcs11Pin::new("1234"));
    /// ```
    pub fn pin(mut self, pin: Pkcs11Pin) -> Self {
        self.pin = PinSource::Value(pin);
        self
    }

    /// Read the user PIN from this environment variable at [`build`](Self::build).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Pkcs11Provider;
    /// let b = Pkcs11Provider::builder("hsm").pin_from_env("HSM_PIN");
    /// ```
    pub fn pin_from_env(mut self, var: impl Into<String>) -> Self {
        self.pin = PinSource::Env(var.into());
        self
    }

    /// The `CKA_LABEL` of the KEK objects (also the key id in wrapped shares). Defaults to the
    /// instance name.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Pkcs11Provider;
    /// let b = Pkcs11Provider::builder("hsm").key_label("kek-hsm");
    /// ```
    pub fn key_label(mut self, label: impl Into<String>) -> Self {
        self.key_label = Some(label.into());
        self
    }

    /// Generate version 1 of the key in the token when no object has the label (default
    /// `false`: in production the key is created by the HSM's own ceremony). The generated key
    /// is `CKK_AES`, 256 bits, token, private, sensitive, never extractable, and allowed only to
    /// encrypt and decrypt.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Pkcs11Provider;
    /// let b = Pkcs11Provider::builder("hsm").create_key_if_missing(true);
    /// ```
    pub fn create_key_if_missing(mut self, create: bool) -> Self {
        self.create_key_if_missing = create;
        self
    }

    /// Most sessions open at once, which is also the most concurrent calls into the module
    /// (default 4). Each call runs on a blocking thread with one session.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Pkcs11Provider;
    /// let b = Pkcs11Provider::builder("hsm").max_sessions(16);
    /// ```
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }

    /// Loads and initializes the module (once per process and path), finds the token, logs in,
    /// finds the key's versions (or creates version 1 if configured to) and checks that every
    /// version is a sensitive, non-extractable AES-256 key allowed to encrypt and decrypt.
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] for a missing module, token, PIN or key, or a key with unsafe
    /// attributes; [`Error::PermissionDenied`] for a wrong or locked PIN; [`Error::Unavailable`]
    /// when the token does not answer.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use kms_providers::{Error, Pkcs11Provider};
    /// let err = Pkcs11Provider::builder("hsm").build().await.unwrap_err();
    /// assert!(matches!(err, Error::Misconfigured { .. }));
    /// # }
    /// ```
    pub async fn build(self) -> Result<Pkcs11Provider, Error> {
        let name = self.name;
        let module = self
            .module
            .ok_or_else(|| Error::misconfigured(&name, "no PKCS#11 module path configured"))?;
        let key_label = self.key_label.unwrap_or_else(|| name.clone());
        let key_id = KeyId::new(key_label.clone())
            .map_err(|e| Error::misconfigured(&name, format!("invalid key label: {e}")))?;
        if matches!(self.token, TokenSelector::Missing) {
            return Err(Error::misconfigured(
                &name,
                "configure a token label or a slot id",
            ));
        }
        if self.max_sessions == 0 || self.max_sessions > Semaphore::MAX_PERMITS {
            return Err(Error::misconfigured(
                &name,
                "max_sessions must be at least 1",
            ));
        }
        let pin = match self.pin {
            PinSource::Value(p) => p,
            PinSource::Env(var) => match std::env::var(&var) {
                Ok(v) => Pkcs11Pin::new(v),
                Err(_) => {
                    return Err(Error::misconfigured(
                        &name,
                        format!("the PIN environment variable {var} is not set (or not UTF-8)"),
                    ));
                }
            },
            PinSource::Missing => {
                return Err(Error::misconfigured(&name, "no PIN configured"));
            }
        };
        let token = self.token;
        let create = self.create_key_if_missing;
        let max_sessions = self.max_sessions;
        let task_name = name.clone();
        let shared = tokio::task::spawn_blocking(move || -> Result<Shared, Error> {
            let name = task_name;
            let ctx = load_module(&name, &module)?;
            let slot = find_slot(&name, &ctx, &token)?;
            let shared = Shared {
                name,
                key_label,
                key_id,
                ctx,
                slot,
                pin,
                max_sessions,
                idle: Mutex::new(Vec::new()),
                keys: RwLock::new(BTreeMap::new()),
                rotation: Mutex::new(()),
            };
            let session = shared.checkout()?;
            let mut keys = shared.find_keys(&session)?;
            if keys.is_empty() {
                if !create {
                    return Err(Error::misconfigured(
                        &shared.name,
                        format!(
                            "no AES key labelled {:?} in the token; create it or enable create_key_if_missing",
                            shared.key_label
                        ),
                    ));
                }
                let handle = shared.generate(&session, 1)?;
                keys.insert(1, handle);
            }
            *shared.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
            shared.checkin(session);
            Ok(shared)
        })
        .await
        .map_err(|e| Error::internal(&name, "PKCS#11 start-up task failed", Some(Box::new(e))))??;
        Ok(Pkcs11Provider {
            shared: Arc::new(shared),
            permits: Arc::new(Semaphore::new(max_sessions)),
        })
    }
}

/// Modules already loaded and initialized, by path. `C_Initialize` may run once per process
/// per module, and every provider on the same module must share that one initialization.
static MODULES: LazyLock<Mutex<HashMap<PathBuf, Pkcs11>>> = LazyLock::new(Mutex::default);

/// Serializes the creation of token objects (key generation) across every provider in the
/// process; see `Shared::generate`.
static TOKEN_OBJECT_CREATION: Mutex<()> = Mutex::new(());

fn load_module(provider: &str, path: &Path) -> Result<Pkcs11, Error> {
    let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(path).map_err(|e| Error::Misconfigured {
        provider: provider.to_owned(),
        reason: format!("cannot load PKCS#11 module {}", path.display()),
        source: Some(Box::new(e)),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another component of this process initialized the module first: sharing it is fine.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::Misconfigured {
                provider: provider.to_owned(),
                reason: format!("cannot initialize PKCS#11 module {}", path.display()),
                source: Some(Box::new(e)),
            });
        }
    }
    modules.insert(path.to_owned(), ctx.clone());
    Ok(ctx)
}

fn find_slot(provider: &str, ctx: &Pkcs11, token: &TokenSelector) -> Result<Slot, Error> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| map_err(provider, e, Op::Other))?;
    match token {
        TokenSelector::Label(label) => {
            for slot in slots {
                let info = ctx
                    .get_token_info(slot)
                    .map_err(|e| map_err(provider, e, Op::Other))?;
                if info.label() == label {
                    return Ok(slot);
                }
            }
            Err(Error::misconfigured(
                provider,
                format!("no initialized PKCS#11 token labelled {label:?}"),
            ))
        }
        TokenSelector::SlotId(id) => slots.into_iter().find(|s| s.id() == *id).ok_or_else(|| {
            Error::misconfigured(provider, format!("no initialized token in slot {id}"))
        }),
        TokenSelector::Missing => Err(Error::misconfigured(provider, "no token configured")),
    }
}

/// Which operation failed: decides what `CKR_GENERAL_ERROR` means.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Decrypt,
    Other,
}

/// Maps a PKCS#11 error to our classes, keeping it as the source.
///
/// `CKR_GENERAL_ERROR` from a GCM *decryption* is an authentication failure: SoftHSM2 reports a
/// tag mismatch that way (its OpenSSL `decryptFinal` failure surfaces as a general error) rather
/// than as `CKR_ENCRYPTED_DATA_INVALID`. Anywhere else it stays a device failure. Treating it as
/// an authentication failure on decrypt cannot hide an outage for long: health checks and every
/// wrap use other operations, which report it as unavailability.
fn map_err(provider: &str, err: CkError, op: Op) -> Error {
    let provider = provider.to_owned();
    let rv = match &err {
        CkError::Pkcs11(rv, _) => *rv,
        CkError::LibraryLoading(_) => {
            return Error::Misconfigured {
                provider,
                reason: "PKCS#11 module could not be loaded".into(),
                source: Some(Box::new(err)),
            };
        }
        _ => {
            return Error::Internal {
                provider,
                reason: "PKCS#11 binding error".into(),
                source: Some(Box::new(err)),
            };
        }
    };
    let source = Some(Box::new(err) as crate::BoxError);
    match rv {
        RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange if op == Op::Decrypt => {
            Error::AuthenticationFailed { provider, source }
        }
        RvError::GeneralError if op == Op::Decrypt => {
            Error::AuthenticationFailed { provider, source }
        }
        RvError::PinIncorrect
        | RvError::PinInvalid
        | RvError::PinLenRange
        | RvError::PinExpired
        | RvError::PinLocked
        | RvError::UserPinNotInitialized
        | RvError::UserAnotherAlreadyLoggedIn
        | RvError::UserTypeInvalid => Error::PermissionDenied {
            provider,
            reason: format!("the token refused the login ({rv})"),
            source,
        },
        RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid => Error::Unavailable {
            provider,
            reason: "the key object handle is no longer valid".into(),
            source,
        },
        RvError::KeyFunctionNotPermitted
        | RvError::KeyTypeInconsistent
        | RvError::KeySizeRange
        | RvError::MechanismInvalid
        | RvError::MechanismParamInvalid
        | RvError::AttributeValueInvalid
        | RvError::AttributeTypeInvalid
        | RvError::TemplateIncomplete
        | RvError::TemplateInconsistent
        | RvError::FunctionNotSupported
        | RvError::TokenWriteProtected
        | RvError::SessionReadOnly
        | RvError::SlotIdInvalid
        | RvError::TokenNotRecognized
        | RvError::ActionProhibited => Error::Misconfigured {
            provider,
            reason: format!("the token refused the operation ({rv})"),
            source,
        },
        RvError::DataLenRange | RvError::DataInvalid => Error::InvalidInput {
            provider,
            reason: format!("the token refused the input ({rv})"),
        },
        RvError::HostMemory
        | RvError::DeviceMemory
        | RvError::DeviceError
        | RvError::DeviceRemoved
        | RvError::TokenNotPresent
        | RvError::SessionClosed
        | RvError::SessionCount
        | RvError::SessionHandleInvalid
        | RvError::UserNotLoggedIn
        | RvError::FunctionFailed
        | RvError::GeneralError
        | RvError::CryptokiNotInitialized
        | RvError::OperationActive
        | RvError::CantLock
        | RvError::FunctionCanceled => Error::Unavailable {
            provider,
            reason: format!("the token failed ({rv})"),
            source,
        },
        _ => Error::Internal {
            provider,
            reason: format!("unexpected PKCS#11 error ({rv})"),
            source,
        },
    }
}

/// State shared with the blocking tasks.
struct Shared {
    name: String,
    key_label: String,
    key_id: KeyId,
    ctx: Pkcs11,
    slot: Slot,
    pin: Pkcs11Pin,
    max_sessions: usize,
    /// Idle logged-in sessions. A `Session` is `Send` but not `Sync`: each is used by one
    /// blocking task at a time, taken out of this pool and put back after the call.
    idle: Mutex<Vec<Session>>,
    /// Key object per version; the last entry is current.
    keys: RwLock<BTreeMap<u32, ObjectHandle>>,
    /// Serializes rotations within the process.
    rotation: Mutex<()>,
}

impl Shared {
    fn checkout(&self) -> Result<Session, Error> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(s) = pooled {
            return Ok(s);
        }
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| map_err(&self.name, e, Op::Other))?;
        self.ensure_login(&session)?;
        Ok(session)
    }

    /// Returns a healthy session to the pool.
    fn checkin(&self, session: Session) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_sessions {
            idle.push(session);
        }
    }

    /// Login state is per application and token, not per session: log in when this session
    /// is not yet in a user state, and accept "already logged in" from a concurrent login.
    fn ensure_login(&self, session: &Session) -> Result<(), Error> {
        let info = session
            .get_session_info()
            .map_err(|e| map_err(&self.name, e, Op::Other))?;
        if matches!(
            info.session_state(),
            SessionState::RwUser | SessionState::RoUser
        ) {
            return Ok(());
        }
        let pin = AuthPin::new(self.pin.expose_secret().into());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => Err(map_err(&self.name, e, Op::Other)),
        }
    }

    /// Finds every version object of the key and checks its attributes.
    fn find_keys(&self, session: &Session) -> Result<BTreeMap<u32, ObjectHandle>, Error> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(self.key_label.as_bytes().to_vec()),
        ];
        let handles = session
            .find_objects(&template)
            .map_err(|e| map_err(&self.name, e, Op::Other))?;
        let mut keys = BTreeMap::new();
        for handle in handles {
            let version = self.check_key(session, handle)?;
            if keys.insert(version, handle).is_some() {
                return Err(Error::misconfigured(
                    &self.name,
                    format!(
                        "two key objects labelled {:?} have version {version} (CKA_ID); remove the duplicate",
                        self.key_label
                    ),
                ));
            }
        }
        Ok(keys)
    }

    /// Reads a key object's attributes; returns its version if it is a safe AES-256 KEK.
    fn check_key(&self, session: &Session, handle: ObjectHandle) -> Result<u32, Error> {
        let attrs = session
            .get_attributes(
                handle,
                &[
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::Id,
                ],
            )
            .map_err(|e| map_err(&self.name, e, Op::Other))?;
        let mut aes = false;
        let mut len32 = false;
        let mut sensitive = false;
        let mut extractable = true;
        let mut encrypt = false;
        let mut decrypt = false;
        let mut id = None;
        for attr in attrs {
            match attr {
                Attribute::KeyType(t) => aes = t == KeyType::AES,
                Attribute::ValueLen(l) => len32 = *l == 32,
                Attribute::Sensitive(b) => sensitive = b,
                Attribute::Extractable(b) => extractable = b,
                Attribute::Encrypt(b) => encrypt = b,
                Attribute::Decrypt(b) => decrypt = b,
                Attribute::Id(bytes) => id = Some(bytes),
                _ => {}
            }
        }
        let bad = |what: &str| {
            Error::misconfigured(
                &self.name,
                format!("key object labelled {:?} {what}", self.key_label),
            )
        };
        if !aes || !len32 {
            return Err(bad("is not an AES-256 key"));
        }
        if !sensitive || extractable {
            return Err(bad(
                "is extractable or not sensitive; a KEK must never leave the token",
            ));
        }
        if !encrypt || !decrypt {
            return Err(bad(
                "is not allowed to encrypt and decrypt (CKA_ENCRYPT, CKA_DECRYPT)",
            ));
        }
        let id = id.unwrap_or_default();
        if id.is_empty() || id.len() > 4 {
            return Err(bad(
                "has no version number in CKA_ID (1 to 4 bytes, big-endian)",
            ));
        }
        let version = id.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        if version == 0 {
            return Err(bad("has version 0 in CKA_ID; versions start at 1"));
        }
        Ok(version)
    }

    /// Generates version `version` of the key inside the token.
    fn generate(&self, session: &Session, version: u32) -> Result<ObjectHandle, Error> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Label(self.key_label.as_bytes().to_vec()),
            Attribute::Id(version.to_be_bytes().to_vec()),
        ];
        // Token objects are created one at a time per process. Creating a key is rare (first
        // start, rotation), so this costs nothing, and modules differ in how well they cope
        // with concurrent token-object creation (a parallel test run once saw SoftHSM2 answer
        // CKR_GENERAL_ERROR to C_GenerateKey while other threads were creating keys on the
        // same token).
        let _serialized = TOKEN_OBJECT_CREATION
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let handle = session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| map_err(&self.name, e, Op::Other))?;
        self.check_key(session, handle)?;
        Ok(handle)
    }

    fn current(&self) -> Result<(u32, ObjectHandle), Error> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.last_key_value()
            .map(|(v, h)| (*v, *h))
            .ok_or_else(|| Error::internal(&self.name, "no key version loaded", None))
    }

    fn max_version(&self) -> u32 {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.last_key_value().map_or(0, |(v, _)| *v)
    }

    fn handle(&self, version: u32) -> Option<ObjectHandle> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.get(&version).copied()
    }

    fn reload(&self, session: &Session) -> Result<(), Error> {
        let found = self.find_keys(session)?;
        if !found.is_empty() {
            *self.keys.write().unwrap_or_else(PoisonError::into_inner) = found;
        }
        Ok(())
    }

    fn encrypt(
        &self,
        session: &Session,
        version: u32,
        handle: ObjectHandle,
        share: &[u8],
        context: &WrapContext,
    ) -> Result<WrappedShare, Error> {
        let key_version = KeyVersion::from_number(version);
        let mut iv = [0u8; GCM_NONCE_LEN];
        getrandom::fill(&mut iv).map_err(|e| Error::rng(&self.name, e))?;
        let aad = gcm_associated_data(ProviderKind::Pkcs11, &self.key_id, &key_version, context);
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, &aad, 128.into())
            .map_err(|e| map_err(&self.name, e, Op::Other))?;
        let blob = session
            .encrypt(&Mechanism::AesGcm(params), handle, share)
            .map_err(|e| map_err(&self.name, e, Op::Other))?;
        if blob.len() != share.len() + GCM_TAG_LEN {
            return Err(Error::internal(
                &self.name,
                "the token returned a GCM ciphertext of the wrong length",
                None,
            ));
        }
        WrappedShare::new(
            ProviderKind::Pkcs11,
            self.key_id.clone(),
            key_version,
            Algorithm::Aes256Gcm,
            iv.to_vec(),
            blob,
        )
        .map_err(|e| Error::internal(&self.name, "wrapped share out of bounds", Some(Box::new(e))))
    }

    fn decrypt(
        &self,
        session: &Session,
        handle: ObjectHandle,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let aad = gcm_associated_data(
            ProviderKind::Pkcs11,
            wrapped.key_id(),
            wrapped.key_version(),
            context,
        );
        let mut iv: [u8; GCM_NONCE_LEN] = wrapped
            .nonce()
            .try_into()
            .map_err(|_| Error::internal(&self.name, "GCM share without a 96-bit nonce", None))?;
        let params = GcmParams::new(&mut iv, &aad, 128.into())
            .map_err(|e| map_err(&self.name, e, Op::Other))?;
        let plain = session
            .decrypt(&Mechanism::AesGcm(params), handle, wrapped.blob())
            .map(Zeroizing::new)
            .map_err(|e| map_err(&self.name, e, Op::Decrypt))?;
        if plain.len() + GCM_TAG_LEN != wrapped.blob().len() {
            return Err(Error::internal(
                &self.name,
                "the token returned a GCM plaintext of the wrong length",
                None,
            ));
        }
        Ok(plain)
    }

    /// Wraps with the current version; if the token says the cached handle is stale (the
    /// object was re-created by an administrator), reloads the key list once and retries.
    fn wrap_blocking(
        &self,
        session: &Session,
        share: &[u8],
        context: &WrapContext,
    ) -> Result<WrappedShare, Error> {
        let (version, handle) = self.current()?;
        match self.encrypt(session, version, handle, share, context) {
            Err(Error::Unavailable { .. }) if self.handle_is_stale(session, handle) => {
                self.reload(session)?;
                let (version, handle) = self.current()?;
                self.encrypt(session, version, handle, share, context)
            }
            other => other,
        }
    }

    fn unwrap_blocking(
        &self,
        session: &Session,
        version: u32,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let unknown = || {
            Error::unknown_key(
                &self.name,
                wrapped.key_id().as_str(),
                Some(wrapped.key_version().as_str()),
            )
        };
        let handle = match self.handle(version) {
            Some(h) => h,
            None => {
                // Only a version newer than ours can have been created since start-up (a
                // rotation by another process); re-read the token for it.
                if version > self.max_version() {
                    self.reload(session)?;
                }
                self.handle(version).ok_or_else(unknown)?
            }
        };
        match self.decrypt(session, handle, wrapped, context) {
            Err(Error::Unavailable { .. }) if self.handle_is_stale(session, handle) => {
                self.reload(session)?;
                let handle = self.handle(version).ok_or_else(unknown)?;
                self.decrypt(session, handle, wrapped, context)
            }
            other => other,
        }
    }

    /// Whether a key handle no longer names an object in the token.
    fn handle_is_stale(&self, session: &Session, handle: ObjectHandle) -> bool {
        matches!(
            session.get_attributes(handle, &[AttributeType::Class]),
            Err(CkError::Pkcs11(
                RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid,
                _
            ))
        )
    }

    fn rotate_blocking(&self, session: &Session) -> Result<u32, Error> {
        let _guard = self.rotation.lock().unwrap_or_else(PoisonError::into_inner);
        self.reload(session)?;
        let next = self.max_version().checked_add(1).ok_or_else(|| {
            Error::misconfigured(&self.name, "the key has reached the last version number")
        })?;
        let handle = self.generate(session, next)?;
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(next, handle);
        Ok(next)
    }
}

/// A KEK held in a PKCS#11 token: AES-256-GCM inside the token, with a fresh 96-bit IV from the
/// OS RNG per wrap and the wrapped form's header plus the [`WrapContext`] as associated data.
///
/// Calls run on Tokio's blocking pool, one pooled, logged-in session each; at most
/// `max_sessions` at once (excess calls wait their turn). One provider per key label; several
/// providers may share a module and a token.
///
/// Rotation creates a new key object with the same label and the next version in `CKA_ID`.
/// Rotate from one process at a time: two processes rotating the same label at the same moment
/// could create two objects with the same version, which every provider then refuses to load
/// until an administrator removes one.
///
/// # Example
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{KeyProvider, Pkcs11Pin, Pkcs11Provider, WrapContext};
///
/// let hsm = Pkcs11Provider::builder("hsm-1")
///     .module("/usr/lib/softhsm/libsofthsm2.so")
///     .token_label("mpc-vault")
///     .pin(Pkcs11Pin::new(std::env::var("HSM_PIN")?))
///     .key_label("kek-hsm-1")
///     .build()
///     .await?;
/// let ctx = WrapContext::new("vault-1", "db/password", 1, 2, "shamir-2-of-3")?;
/// let wrapped = hsm.wrap(&[7; 32], &ctx).await?;
/// assert_eq!(hsm.unwrap(&wrapped, &ctx).await?.expose_secret(), &[7; 32]);
/// # Ok(()) }
/// ```
pub struct Pkcs11Provider {
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
}

impl Pkcs11Provider {
    /// Starts configuring an instance with this name (the name errors carry).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Pkcs11Provider;
    /// let b = Pkcs11Provider::builder("hsm-1");
    /// ```
    pub fn builder(name: impl Into<String>) -> Pkcs11ProviderBuilder {
        Pkcs11ProviderBuilder {
            name: name.into(),
            module: None,
            token: TokenSelector::Missing,
            pin: PinSource::Missing,
            key_label: None,
            create_key_if_missing: false,
            max_sessions: 4,
        }
    }

    /// The version new wraps use.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f(hsm: kms_providers::Pkcs11Provider) {
    /// println!("wrapping with version {}", hsm.current_version());
    /// # }
    /// ```
    pub fn current_version(&self) -> KeyVersion {
        KeyVersion::from_number(self.shared.max_version())
    }

    /// Runs `f` with a pooled session on the blocking pool. A session whose call failed with a
    /// transient error is closed instead of pooled: it may be the broken part.
    async fn with_session<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared, &Session) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let name = &self.shared.name;
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| Error::internal(name, "session limiter closed", Some(Box::new(e))))?;
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let session = shared.checkout()?;
            let result = f(&shared, &session);
            match &result {
                Err(e) if e.is_transient() => drop(session),
                _ => shared.checkin(session),
            }
            result
        })
        .await
        .map_err(|e| Error::internal(name, "PKCS#11 task failed", Some(Box::new(e))))?
    }
}

impl fmt::Debug for Pkcs11Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Provider")
            .field("name", &self.shared.name)
            .field("key_label", &self.shared.key_label)
            .field("slot", &self.shared.slot.id())
            .field("pin", &self.shared.pin)
            .field("max_sessions", &self.shared.max_sessions)
            .field("current_version", &self.shared.max_version())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl KeyProvider for Pkcs11Provider {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Pkcs11
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        check_share_len(&self.shared.name, share)?;
        // The blocking task needs owned data; the copy of the share is wiped when it drops.
        let share = Zeroizing::new(share.to_vec());
        let context = context.clone();
        self.with_session(move |shared, session| shared.wrap_blocking(session, &share, &context))
            .await
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        let name = &self.shared.name;
        if wrapped.kind() != ProviderKind::Pkcs11 {
            return Err(Error::WrongProviderKind {
                provider: name.clone(),
                expected: ProviderKind::Pkcs11,
                found: wrapped.kind(),
            });
        }
        if wrapped.algorithm() != Algorithm::Aes256Gcm {
            return Err(Error::invalid_input(
                name,
                format!("PKCS#11 providers do not use {}", wrapped.algorithm()),
            ));
        }
        if wrapped.key_id() != &self.shared.key_id {
            return Err(Error::unknown_key(name, wrapped.key_id().as_str(), None));
        }
        let version = wrapped
            .key_version()
            .as_number()
            .filter(|v| *v > 0)
            .ok_or_else(|| {
                Error::unknown_key(
                    name,
                    wrapped.key_id().as_str(),
                    Some(wrapped.key_version().as_str()),
                )
            })?;
        let wrapped = wrapped.clone();
        let context = context.clone();
        let plain = self
            .with_session(move |shared, session| {
                shared.unwrap_blocking(session, version, &wrapped, &context)
            })
            .await?;
        Ok(UnwrappedShare::new(plain))
    }

    async fn health(&self) -> Result<Health, Error> {
        let name = self.shared.name.clone();
        let ctx = health_probe_context();
        let probe = [0x5a_u8; 32];
        let version = self
            .with_session(move |shared, session| {
                let wrapped = shared.wrap_blocking(session, &probe, &ctx)?;
                let version = wrapped.key_version().as_number().unwrap_or(0);
                let back = shared.unwrap_blocking(session, version, &wrapped, &ctx)?;
                if !bool::from(back.as_slice().ct_eq(&probe)) {
                    return Err(Error::internal(
                        &shared.name,
                        "health probe unwrapped to different bytes",
                        None,
                    ));
                }
                Ok(version)
            })
            .await?;
        Ok(Health::new(
            name,
            ProviderKind::Pkcs11,
            self.shared.key_id.clone(),
            KeyVersion::from_number(version),
        ))
    }
}

#[async_trait]
impl KeyRotation for Pkcs11Provider {
    /// Generates the next key object (same label, next `CKA_ID`) and makes it current.
    async fn rotate(&self) -> Result<KeyVersion, Error> {
        let v = self
            .with_session(|shared, session| shared.rotate_blocking(session))
            .await?;
        Ok(KeyVersion::from_number(v))
    }
}
