//! Fixtures: real `local` providers in a temporary key directory, each behind the seeded fault
//! injector, and the modes every test runs over.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use custody_policy::{
    ClientShare, Custodian, CustodyMode, Error, Opened, Sealed, SecretContext, SlotIndex,
    StoredSecret, WriteQuorum,
};
use kms_providers::{FaultConfig, FaultInjector, Latency, LocalProvider};
use tempfile::TempDir;

/// A provider under test: a real local provider behind a fault injector.
pub(crate) type TestProvider = Arc<FaultInjector<LocalProvider>>;

/// Every mode the matrix runs: the four named modes and three custom layouts (with a client
/// slot and a PKCS#11-style slot; t < n without a client; n-of-n without a client).
pub(crate) fn all_modes() -> Vec<CustodyMode> {
    vec![
        CustodyMode::standard(),
        CustodyMode::two_of_two_client_custody(),
        CustodyMode::two_of_three_multi_hsm(),
        CustodyMode::two_of_three_client_custody(),
        "3of5:gcp,aws,azure,pkcs11,client".parse().unwrap(),
        "3of4:gcp,aws,azure,pkcs11".parse().unwrap(),
        "3of3:gcp,aws,azure".parse().unwrap(),
    ]
}

/// The named provider slots of a mode, in slot order.
pub(crate) fn provider_names(mode: &CustodyMode) -> Vec<String> {
    mode.provider_slots()
        .map(|(_, name)| name.as_str().to_owned())
        .collect()
}

/// The slot index of a provider in a mode.
pub(crate) fn slot_of(mode: &CustodyMode, name: &str) -> SlotIndex {
    mode.provider_slots()
        .find(|(_, n)| n.as_str() == name)
        .map(|(slot, _)| slot)
        .unwrap()
}

/// How many provider shares a read of this mode needs (the client share counts as one).
pub(crate) fn providers_needed(mode: &CustodyMode) -> usize {
    usize::from(mode.threshold()) - usize::from(mode.client_slot().is_some())
}

/// A key directory shared by every provider a test builds: two providers with the same name
/// use the same KEK, as two server processes would.
pub(crate) struct Lab {
    dir: TempDir,
}

impl Lab {
    pub(crate) fn new() -> Lab {
        Lab {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn provider(&self, name: &str, faults: FaultConfig) -> TestProvider {
        let local = LocalProvider::builder(name)
            .key_dir(self.dir.path())
            .build()
            .unwrap();
        Arc::new(FaultInjector::new(local, faults).unwrap())
    }

    /// A custodian with one provider per provider slot of `mode`, each with the faults
    /// `faults(name)` returns.
    pub(crate) fn rig_with(
        &self,
        mode: &CustodyMode,
        quorum: WriteQuorum,
        faults: impl Fn(&str) -> FaultConfig,
    ) -> Rig {
        let providers: BTreeMap<String, TestProvider> = provider_names(mode)
            .into_iter()
            .map(|name| {
                let provider = self.provider(&name, faults(&name));
                (name, provider)
            })
            .collect();
        let custodian = providers
            .values()
            .fold(Custodian::builder(), |builder, p| {
                builder.shared_provider(p.clone())
            })
            .write_quorum(quorum)
            .build()
            .unwrap();
        Rig {
            custodian,
            providers,
        }
    }

    /// A custodian with healthy providers.
    pub(crate) fn rig(&self, mode: &CustodyMode) -> Rig {
        self.rig_with(mode, WriteQuorum::All, |_| FaultConfig::new(1))
    }
}

/// Faults with only a fixed latency.
pub(crate) fn latency(ms: u64) -> FaultConfig {
    FaultConfig::new(ms).latency(Latency::Fixed(Duration::from_millis(ms)))
}

pub(crate) struct Rig {
    pub(crate) custodian: Custodian,
    pub(crate) providers: BTreeMap<String, TestProvider>,
}

impl Rig {
    pub(crate) fn provider(&self, name: &str) -> &TestProvider {
        &self.providers[name]
    }

    pub(crate) fn down(&self, name: &str) {
        self.provider(name).set_outage(true);
    }

    pub(crate) fn up(&self, name: &str) {
        self.provider(name).set_outage(false);
    }

    pub(crate) fn all_up(&self) {
        for p in self.providers.values() {
            p.set_outage(false);
        }
    }

    /// Calls each provider has seen so far, by name.
    pub(crate) fn calls(&self) -> BTreeMap<String, u64> {
        self.providers
            .iter()
            .map(|(name, p)| (name.clone(), p.stats().calls))
            .collect()
    }

    pub(crate) async fn seal(&self, ctx: &SecretContext, plaintext: &[u8]) -> Sealed {
        self.custodian.seal(ctx, plaintext).await.unwrap()
    }

    pub(crate) async fn open(
        &self,
        ctx: &SecretContext,
        stored: &StoredSecret,
        client: Option<&ClientShare>,
    ) -> Result<Opened, Error> {
        self.custodian.open(ctx, stored, client).await
    }
}

pub(crate) fn ctx(mode: &CustodyMode, path: &str, version: u64) -> SecretContext {
    SecretContext::new("vault-7", path, version, "password", mode.clone()).unwrap()
}

/// Asserts an open succeeded with `plaintext`.
pub(crate) fn assert_opens(result: Result<Opened, Error>, plaintext: &[u8]) -> Opened {
    let opened = result.unwrap_or_else(|err| panic!("open failed: {err}"));
    assert_eq!(opened.plaintext().expose_secret(), plaintext);
    opened
}

/// Whether a read of `mode` still succeeds with `down` provider shares missing.
pub(crate) fn survives(mode: &CustodyMode, down: usize) -> bool {
    provider_names(mode).len() >= down + providers_needed(mode)
}
