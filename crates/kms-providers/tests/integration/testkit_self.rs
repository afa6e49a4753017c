//! The conformance suite can fail: providers broken on purpose (wrappers around a real local
//! provider) are caught by the check meant for them.

use kms_providers::testkit;
use kms_providers::{
    Error, Health, KeyProvider, LocalProvider, ProviderKind, UnwrappedShare, WrapContext,
    WrappedShare, async_trait,
};

/// How a wrapper breaks the contract.
#[derive(Debug, Clone, Copy)]
enum Flaw {
    /// Binds a fixed context instead of the caller's.
    IgnoresContext,
    /// Reports failed unwraps as transient.
    TransientFailures,
    /// Names another provider in its errors.
    WrongNameInErrors,
}

#[derive(Debug)]
struct Broken {
    inner: LocalProvider,
    flaw: Flaw,
}

impl Broken {
    fn context<'a>(&self, real: &'a WrapContext, fixed: &'a WrapContext) -> &'a WrapContext {
        match self.flaw {
            Flaw::IgnoresContext => fixed,
            Flaw::TransientFailures | Flaw::WrongNameInErrors => real,
        }
    }

    fn error(&self, e: Error) -> Error {
        match self.flaw {
            Flaw::TransientFailures => Error::Unavailable {
                provider: self.inner.name().to_owned(),
                reason: e.to_string(),
                source: None,
            },
            Flaw::WrongNameInErrors => Error::Internal {
                provider: "somebody-else".into(),
                reason: e.to_string(),
                source: None,
            },
            Flaw::IgnoresContext => e,
        }
    }
}

fn fixed() -> WrapContext {
    WrapContext::new("fixed", "fixed", 0, 0, "fixed").unwrap()
}

#[async_trait]
impl KeyProvider for Broken {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        let f = fixed();
        self.inner
            .wrap(share, self.context(context, &f))
            .await
            .map_err(|e| self.error(e))
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        let f = fixed();
        self.inner
            .unwrap(wrapped, self.context(context, &f))
            .await
            .map_err(|e| self.error(e))
    }

    async fn health(&self) -> Result<Health, Error> {
        self.inner.health().await
    }
}

fn broken(dir: &std::path::Path, flaw: Flaw) -> Broken {
    Broken {
        inner: crate::support::local(dir, "broken"),
        flaw,
    }
}

#[tokio::test]
async fn a_provider_that_ignores_the_context_fails_wrong_context() {
    let dir = tempfile::tempdir().unwrap();
    let p = broken(dir.path(), Flaw::IgnoresContext);
    // Everything else about it works.
    testkit::check_round_trip(&p).await.unwrap();
    let failure = testkit::check_wrong_context(&p).await.unwrap_err();
    assert_eq!(failure.check(), "wrong_context");
    assert!(failure.detail().contains("vault id"), "{failure}");
}

#[tokio::test]
async fn a_provider_with_transient_auth_failures_fails_tampered() {
    let dir = tempfile::tempdir().unwrap();
    let p = broken(dir.path(), Flaw::TransientFailures);
    let failure = testkit::check_tampered(&p).await.unwrap_err();
    assert!(failure.detail().contains("transient"), "{failure}");
    assert!(testkit::check_wrong_context(&p).await.is_err());
}

#[tokio::test]
async fn a_provider_that_misnames_itself_fails_errors_name_provider() {
    let dir = tempfile::tempdir().unwrap();
    let p = broken(dir.path(), Flaw::WrongNameInErrors);
    let failure = testkit::check_errors_name_provider(&p).await.unwrap_err();
    assert!(failure.detail().contains("somebody-else"), "{failure}");
    assert!(testkit::check_input_bounds(&p).await.is_err());
}
