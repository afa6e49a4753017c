//! Properties over random modes, contents, outages and liars.

use std::collections::BTreeMap;

use custody_policy::{ClientShare, Custodian, CustodyMode, SlotHolder, WriteQuorum};
use kms_providers::FaultConfig;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::support::{Lab, TestProvider, ctx, provider_names, providers_needed};

const POOL: [&str; 6] = ["p0", "p1", "p2", "p3", "p4", "p5"];

/// A random mode over the pool: 1 to 5 providers in random order, maybe a client slot at a
/// random position, a random threshold; a lone provider without a client is `standard`.
fn mode_strategy() -> impl Strategy<Value = CustodyMode> {
    (
        proptest::sample::subsequence(POOL.to_vec(), 1..=5).prop_shuffle(),
        any::<bool>(),
        any::<Index>(),
        any::<Index>(),
    )
        .prop_map(|(names, client, position, threshold)| {
            let mut holders: Vec<SlotHolder> = names
                .iter()
                .map(|n| SlotHolder::provider(*n).unwrap())
                .collect();
            if client {
                holders.insert(position.index(holders.len() + 1), SlotHolder::Client);
            }
            if holders.len() == 1 {
                return CustodyMode::standard().with_providers(names).unwrap();
            }
            let t = 2 + threshold.index(holders.len() - 1);
            CustodyMode::custom(u8::try_from(t).unwrap(), holders).unwrap()
        })
}

/// One provider per pool name over `lab`'s KEKs, each with `faults(name)`, and a custodian
/// over all of them.
fn pool(
    lab: &Lab,
    faults: impl Fn(&str) -> FaultConfig,
) -> (BTreeMap<&'static str, TestProvider>, Custodian) {
    let providers: BTreeMap<&'static str, TestProvider> = POOL
        .iter()
        .map(|&n| (n, lab.provider(n, faults(n))))
        .collect();
    let custodian = providers
        .values()
        .fold(Custodian::builder(), |b, p| b.shared_provider(p.clone()))
        .write_quorum(WriteQuorum::All)
        .build()
        .unwrap();
    (providers, custodian)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mode_strings_round_trip(mode in mode_strategy()) {
        let text = mode.to_string();
        prop_assert_eq!(text.parse::<CustodyMode>().unwrap(), mode);
    }

    #[test]
    fn parsing_anything_never_panics(text in ".{0,80}") {
        let _ = text.parse::<CustodyMode>();
        let _ = text.parse::<custody_policy::BillingTier>();
        let _ = ClientShare::from_base64(&text);
    }

    #[test]
    fn client_share_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Ok(share) = ClientShare::from_bytes(&bytes) {
            // Whatever parses re-encodes to the same bytes, in binary and in base64.
            let encoded = share.to_bytes();
            prop_assert_eq!(encoded.as_slice(), bytes.as_slice());
            let again = ClientShare::from_base64(share.to_base64().expose_secret()).unwrap();
            let reencoded = again.to_bytes();
            prop_assert_eq!(reencoded.as_slice(), bytes.as_slice());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Seal under a random mode, take random providers down, open: it succeeds, with exactly
    /// the plaintext, if and only if enough provider shares remain.
    #[test]
    fn reads_succeed_exactly_when_enough_shares_remain(
        mode in mode_strategy(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..512),
        down in proptest::sample::subsequence(POOL.to_vec(), 0..=3),
        version in 1u64..1000,
    ) {
        let lab = Lab::new();
        let runtime = runtime();
        let (providers, custodian) = pool(&lab, |_| FaultConfig::new(1));
        let ctx = ctx(&mode, "prop/secret", version);
        let (stored, client) = runtime.block_on(custodian.seal(&ctx, &plaintext)).unwrap().into_parts();
        for name in &down {
            providers[name].set_outage(true);
        }
        let available = provider_names(&mode).iter().filter(|n| !down.contains(&n.as_str())).count();
        let result = runtime.block_on(custodian.open(&ctx, &stored, client.as_ref()));
        if available >= providers_needed(&mode) {
            let opened = result.unwrap();
            prop_assert_eq!(opened.plaintext().expose_secret(), plaintext.as_slice());
            prop_assert_eq!(opened.report().used().len(), usize::from(mode.threshold()));
        } else {
            let is_not_enough = matches!(result, Err(custody_policy::Error::NotEnoughShares { .. }));
            prop_assert!(is_not_enough);
        }
    }

    /// With random liars, a read returns the right plaintext or a typed error, never anything
    /// else. With one liar, attribution is exact: the liar alone is ever named. With two (whose
    /// corruptions here are identical, so they can cancel at the secret: the worst case for
    /// attribution), nobody is named unless the honest shares outvote them.
    #[test]
    fn liars_never_change_the_plaintext(
        mode in mode_strategy(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..256),
        liars in proptest::sample::subsequence(POOL.to_vec(), 0..=2),
    ) {
        let lab = Lab::new();
        let runtime = runtime();
        let (_, honest) = pool(&lab, |_| FaultConfig::new(1));
        let ctx = ctx(&mode, "prop/liars", 1);
        let (stored, client) = runtime.block_on(honest.seal(&ctx, &plaintext)).unwrap().into_parts();
        // The same KEKs, with the liars corrupting every share they unwrap.
        let (_, custodian) = pool(&lab, |n| {
            FaultConfig::new(3).corrupt_rate(if liars.contains(&n) { 1.0 } else { 0.0 })
        });
        let honest_in_mode = provider_names(&mode).iter().filter(|n| !liars.contains(&n.as_str())).count();
        for _ in 0..=provider_names(&mode).len() {
            match runtime.block_on(custodian.open(&ctx, &stored, client.as_ref())) {
                Ok(opened) => {
                    prop_assert_eq!(opened.plaintext().expose_secret(), plaintext.as_slice());
                    let in_mode = provider_names(&mode).iter().filter(|n| liars.contains(&n.as_str())).count();
                    if in_mode <= 1 {
                        for slot in opened.report().liars() {
                            let name = slot.holder().to_string();
                            prop_assert!(liars.contains(&name.as_str()), "{} named honest {}", mode, name);
                        }
                        prop_assert!(opened.report().disputed().is_empty());
                    }
                }
                Err(err) => {
                    // Failing is only allowed when the honest providers cannot reach the
                    // threshold on their own.
                    prop_assert!(honest_in_mode < providers_needed(&mode), "{}: {}", mode, err);
                }
            }
        }
    }
}
