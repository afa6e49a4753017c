//! Shared fixtures: the process-wide SoftHSM2 token and an in-flight counter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use kms_providers::testkit::{SOFTHSM2_CONF, SoftHsmToken};
use kms_providers::{
    Error, Health, KeyProvider, LocalProvider, Pkcs11Pin, UnwrappedShare, WrapContext,
    WrappedShare, async_trait,
};

/// Label of the token every PKCS#11 test shares.
pub(crate) const TOKEN: &str = "kms-providers-tests";
/// Label of a second token that no test logs into except the PIN test.
pub(crate) const PIN_TOKEN: &str = "kms-providers-pin";

pub(crate) struct Hsm {
    pub(crate) token: SoftHsmToken,
    pub(crate) pin_token_pin: Pkcs11Pin,
}

/// The SoftHSM2 token for this process. Fails the calling test loudly if SoftHSM2 is missing:
/// scripts/setup/10-softhsm2.sh installs it.
pub(crate) fn hsm() -> &'static Hsm {
    static HSM: OnceLock<Hsm> = OnceLock::new();
    HSM.get_or_init(|| {
        // A static is never dropped, so the token directory outlives the run: keep it under
        // the target directory, which `cargo clean` empties, rather than in /tmp.
        let token = SoftHsmToken::create_in(env!("CARGO_TARGET_TMPDIR"), TOKEN)
            .unwrap_or_else(|e| panic!("{e}"));
        let pin_token_pin = token
            .init_token(PIN_TOKEN)
            .unwrap_or_else(|e| panic!("{e}"));
        export_softhsm_conf(&token);
        Hsm {
            token,
            pin_token_pin,
        }
    })
}

/// Sets `SOFTHSM2_CONF`. SoftHSM2 takes its configuration path only from the environment,
/// read once when the module is initialized; that happens after `hsm()`'s initializer returns
/// (every PKCS#11 test calls `hsm()` first and `OnceLock` makes the others wait).
#[allow(unsafe_code)] // The one way to give SoftHSM2 its configuration; see the SAFETY note.
fn export_softhsm_conf(token: &SoftHsmToken) {
    // SAFETY: `set_var` is unsound only if another thread reads the environment through libc
    // at the same time. Every Rust-side read (`std::env`) takes std's environment lock, which
    // `set_var` also takes; the only C code in this process that reads the environment is the
    // PKCS#11 module, which no test loads before `hsm()` returns. This is the single write to
    // the environment in the test binary.
    unsafe {
        std::env::set_var(SOFTHSM2_CONF, token.conf_path());
    }
}

pub(crate) fn ctx(version: u64, index: u8) -> WrapContext {
    WrapContext::new(
        "vault-it",
        "integration/secret",
        version,
        index,
        "shamir-2-of-3",
    )
    .unwrap()
}

pub(crate) fn local(dir: &std::path::Path, key: &str) -> LocalProvider {
    LocalProvider::builder("local-it")
        .key_dir(dir)
        .key_name(key)
        .build()
        .unwrap()
}

/// Instrumentation, not a stand-in: passes every call to a real provider and records how many
/// are inside it at once.
#[derive(Debug)]
pub(crate) struct InFlight<P> {
    pub(crate) inner: P,
    pub(crate) now: AtomicUsize,
    pub(crate) peak: AtomicUsize,
}

impl<P> InFlight<P> {
    pub(crate) fn new(inner: P) -> Arc<Self> {
        Arc::new(Self {
            inner,
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl<P: KeyProvider> KeyProvider for InFlight<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> kms_providers::ProviderKind {
        self.inner.kind()
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        self.enter();
        let r = self.inner.wrap(share, context).await;
        self.leave();
        r
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        self.enter();
        let r = self.inner.unwrap(wrapped, context).await;
        self.leave();
        r
    }

    async fn health(&self) -> Result<Health, Error> {
        self.enter();
        let r = self.inner.health().await;
        self.leave();
        r
    }
}
