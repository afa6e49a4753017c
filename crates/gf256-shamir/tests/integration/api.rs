//! The public API: happy paths of every entry point, and every error with its exact variant.

use gf256_shamir::{
    AsShareRef, Backend, Combiner, Error, FastRng, Share, ShareIndex, ShareRef, Splitter,
    Threshold, combine, recover_share, split,
};

fn t(threshold: u8) -> Threshold {
    Threshold::try_from(threshold).unwrap()
}

fn x(index: u8) -> ShareIndex {
    ShareIndex::try_from(index).unwrap()
}

#[test]
fn one_call_round_trip_for_the_dek_use_case() {
    let dek: Vec<u8> = (0..32).collect();
    let shares = split(&dek, 2, 3).unwrap();
    assert_eq!(shares.len(), 3);
    let xs: Vec<u8> = shares.iter().map(|s| s.index().get()).collect();
    assert_eq!(xs, [1, 2, 3]);
    for pair in [[0, 1], [0, 2], [1, 2], [2, 0]] {
        let picked = [&shares[pair[0]], &shares[pair[1]]];
        assert_eq!(combine(&picked, 2).unwrap().as_slice(), dek.as_slice());
    }
    for missing in 0..3 {
        let others: Vec<&Share> = (0..3)
            .filter(|&i| i != missing)
            .map(|i| &shares[i])
            .collect();
        let repaired = recover_share(&others, 2, shares[missing].index().get()).unwrap();
        assert_eq!(repaired, shares[missing]);
    }
}

#[test]
fn shares_are_not_the_secret_and_differ_between_splits() {
    let secret = [0xAB; 32];
    let a = split(&secret, 2, 3).unwrap();
    let b = split(&secret, 2, 3).unwrap();
    for (sa, sb) in a.iter().zip(&b) {
        assert_ne!(sa.expose_secret(), &secret[..]);
        assert_ne!(sa, sb, "two splits reused coefficients");
    }
}

#[test]
fn threshold_and_count_limits() {
    assert_eq!(
        split(b"s", 1, 3).unwrap_err(),
        Error::ThresholdOutOfRange { threshold: 1 }
    );
    assert_eq!(
        split(b"s", 0, 3).unwrap_err(),
        Error::ThresholdOutOfRange { threshold: 0 }
    );
    assert_eq!(
        split(b"s", 3, 2).unwrap_err(),
        Error::ShareCountOutOfRange {
            threshold: 3,
            count: 2
        }
    );
    // The extremes work.
    let shares = split(b"edge", 255, 255).unwrap();
    assert_eq!(combine(&shares, 255).unwrap().as_slice(), b"edge");
    let shares = split(b"edge", 2, 255).unwrap();
    assert_eq!(combine(&shares[253..], 2).unwrap().as_slice(), b"edge");
    assert_eq!(shares[254].index(), ShareIndex::MAX);
}

#[test]
fn empty_secret_is_refused_everywhere() {
    let splitter = Splitter::new(t(2), 2).unwrap();
    assert_eq!(split(b"", 2, 2).unwrap_err(), Error::EmptySecret);
    assert_eq!(splitter.split(b"").unwrap_err(), Error::EmptySecret);
    let mut rng = FastRng::new().unwrap();
    assert_eq!(
        splitter.split_with_rng(b"", &mut rng).unwrap_err(),
        Error::EmptySecret
    );
    let (mut a, mut b) = ([0u8; 0], [0u8; 0]);
    assert_eq!(
        splitter.split_into(b"", &mut [&mut a, &mut b]).unwrap_err(),
        Error::EmptySecret
    );
}

#[test]
fn zero_index_is_unrepresentable_and_rejected_when_decoding() {
    assert!(ShareIndex::new(0).is_none());
    assert_eq!(ShareIndex::try_from(0u8).unwrap_err(), Error::ZeroIndex);
    assert_eq!(Share::from_bytes(&[0, 1, 2]).unwrap_err(), Error::ZeroIndex);
    assert_eq!(
        Share::from_vault_bytes(&[1, 2, 0]).unwrap_err(),
        Error::ZeroIndex
    );
    assert_eq!(ShareRef::from_bytes(&[0, 1]).unwrap_err(), Error::ZeroIndex);
    let shares = split(b"abc", 2, 2).unwrap();
    assert_eq!(recover_share(&shares, 2, 0).unwrap_err(), Error::ZeroIndex);
}

#[test]
fn a_forged_share_at_zero_cannot_substitute_the_secret() {
    // With x = 0 allowed, the "share" (0, s') would make any combine return s'.
    let forged = [0u8, b'e', b'v', b'i', b'l'];
    assert!(ShareRef::from_bytes(&forged).is_err());
    assert!(Share::from_bytes(&forged).is_err());
}

#[test]
fn duplicate_indices_are_rejected() {
    let shares = split(b"abc", 2, 3).unwrap();
    let err = combine(&[&shares[1], &shares[1]], 2).unwrap_err();
    assert_eq!(err, Error::DuplicateIndex { index: 2 });
    // The same x with different values (a forged copy) too.
    let fake = Share::new(x(2), b"xyz").unwrap();
    let err = combine(&[&shares[0], &shares[1], &fake], 2).unwrap_err();
    assert_eq!(err, Error::DuplicateIndex { index: 2 });
    let err = Splitter::with_indices(t(2), &[x(5), x(9), x(5)]).unwrap_err();
    assert_eq!(err, Error::DuplicateIndex { index: 5 });
}

#[test]
fn fewer_than_threshold_is_an_error_not_garbage() {
    let shares = split(b"secret", 3, 5).unwrap();
    for count in 0..3 {
        let err = combine(&shares[..count], 3).unwrap_err();
        assert_eq!(
            err,
            Error::NotEnoughShares {
                threshold: 3,
                provided: count
            }
        );
        let err = recover_share(&shares[..count], 3, 4).unwrap_err();
        assert!(matches!(err, Error::NotEnoughShares { .. }));
    }
}

#[test]
fn mismatched_lengths_are_rejected() {
    let a = split(b"abc", 2, 2).unwrap();
    let b = split(b"abcd", 2, 2).unwrap();
    let err = combine(&[&a[0], &b[1]], 2).unwrap_err();
    assert_eq!(
        err,
        Error::ShareLengthMismatch {
            position: 1,
            expected: 3,
            found: 4
        }
    );
}

#[test]
fn surplus_shares_are_checked_for_consistency() {
    let shares = split(b"consistent", 2, 4).unwrap();
    assert_eq!(combine(&shares, 2).unwrap().as_slice(), b"consistent");
    // Corrupt one y-byte of the surplus share.
    let mut bytes = shares[3].to_bytes();
    bytes[5] ^= 0x01;
    let corrupted = Share::from_bytes(&bytes).unwrap();
    let mixed = [&shares[0], &shares[1], &shares[2], &corrupted];
    assert_eq!(
        combine(&mixed, 2).unwrap_err(),
        Error::InconsistentShares { threshold: 2 }
    );
    // A share from another split of the same length is caught too.
    let other = split(b"consistent", 2, 4).unwrap();
    assert!(matches!(
        combine(&[&shares[0], &shares[1], &other[2]], 2),
        Err(Error::InconsistentShares { .. })
    ));
    // The output buffer of the `_into` form is wiped on that error.
    let mut out = [0xEEu8; 10];
    let err = Combiner::new(t(2))
        .combine_into(&mixed, &mut out)
        .unwrap_err();
    assert!(matches!(err, Error::InconsistentShares { .. }));
    assert_eq!(out, [0u8; 10]);
    // Large surplus checks span several stack chunks.
    let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let shares = split(&big, 3, 6).unwrap();
    assert_eq!(combine(&shares, 3).unwrap().as_slice(), big.as_slice());
    let mut bytes = shares[5].to_bytes();
    bytes[4321] ^= 0x80;
    let corrupted = Share::from_bytes(&bytes).unwrap();
    let mixed = [&shares[0], &shares[1], &shares[2], &shares[3], &corrupted];
    assert!(matches!(
        combine(&mixed, 3),
        Err(Error::InconsistentShares { .. })
    ));
}

#[test]
fn into_forms_check_their_buffers() {
    let splitter = Splitter::new(t(2), 3).unwrap();
    let mut a = [0u8; 4];
    let mut b = [0u8; 4];
    let mut c = [0u8; 5];
    let err = splitter
        .split_into(b"abcd", &mut [&mut a, &mut b])
        .unwrap_err();
    assert_eq!(
        err,
        Error::OutputMismatch {
            what: "buffer count",
            expected: 3,
            found: 2
        }
    );
    let err = splitter
        .split_into(b"abcd", &mut [&mut a, &mut b, &mut c])
        .unwrap_err();
    assert_eq!(
        err,
        Error::OutputMismatch {
            what: "buffer length",
            expected: 4,
            found: 5
        }
    );
    assert_eq!((a, b), ([0; 4], [0; 4]), "written before the error");

    let shares = split(b"abcd", 2, 3).unwrap();
    let combiner = Combiner::new(t(2));
    let mut out = [0u8; 3];
    assert_eq!(
        combiner.combine_into(&shares, &mut out).unwrap_err(),
        Error::OutputMismatch {
            what: "buffer length",
            expected: 4,
            found: 3
        }
    );
    assert!(matches!(
        combiner.recover_share_into(&shares, x(9), &mut out),
        Err(Error::OutputMismatch { .. })
    ));
}

#[test]
fn split_into_and_combine_into_round_trip() {
    let t3 = t(3);
    let splitter = Splitter::new(t3, 5).unwrap();
    let secret: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(3)).collect();
    let mut buffers = vec![vec![0u8; 100]; 5];
    let mut outputs: Vec<&mut [u8]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
    splitter.split_into(&secret, &mut outputs).unwrap();
    let views: Vec<ShareRef<'_>> = splitter
        .indices()
        .iter()
        .zip(&buffers)
        .map(|(x, y)| ShareRef::new(*x, y).unwrap())
        .collect();
    let mut out = vec![0u8; 100];
    let combiner = Combiner::new(t3);
    combiner.combine_into(&views[2..], &mut out).unwrap();
    assert_eq!(out, secret);
    combiner
        .recover_share_into(&views[..3], x(5), &mut out)
        .unwrap();
    assert_eq!(out, buffers[4]);
}

#[test]
fn explicit_and_random_indices() {
    let xs = [x(200), x(3), x(77)];
    let splitter = Splitter::with_indices(t(2), &xs).unwrap();
    assert_eq!(splitter.indices(), &xs);
    let shares = splitter.split(b"k").unwrap();
    assert_eq!(shares[0].index(), x(200));
    assert_eq!(combine(&shares[1..], 2).unwrap().as_slice(), b"k");
    assert_eq!(
        Splitter::with_indices(t(3), &xs[..2]).unwrap_err(),
        Error::ShareCountOutOfRange {
            threshold: 3,
            count: 2
        }
    );

    // A seeded generator: the draws are fixed, so the coverage check below cannot flake.
    let mut rng = super::common::seeded(31337);
    let mut seen = [false; 256];
    for _ in 0..2000 {
        let splitter = Splitter::with_random_indices(t(2), 5, &mut rng).unwrap();
        let xs: Vec<u8> = splitter.indices().iter().map(|x| x.get()).collect();
        assert_eq!(xs.len(), 5);
        let mut sorted = xs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "repeated random index in {xs:?}");
        for x in xs {
            seen[usize::from(x)] = true;
        }
        let shares = splitter.split(b"random x").unwrap();
        assert_eq!(combine(&shares[3..], 2).unwrap().as_slice(), b"random x");
    }
    assert!(!seen[0]);
    assert!(seen[1..].iter().all(|&s| s), "some index never drawn");
    // All 255 indices at once.
    let all = Splitter::with_random_indices(t(2), 255, &mut rng).unwrap();
    let mut xs: Vec<u8> = all.indices().iter().map(|x| x.get()).collect();
    xs.sort_unstable();
    assert_eq!(xs, (1..=255).collect::<Vec<u8>>());
}

#[test]
fn forcing_backends() {
    for backend in Backend::ALL {
        let splitter = Splitter::new(t(2), 3).unwrap().with_backend(backend);
        let combiner = Combiner::new(t(2)).with_backend(backend);
        if backend.is_supported() {
            let splitter = splitter.unwrap();
            assert_eq!(splitter.backend(), backend);
            let shares = splitter.split(b"forced").unwrap();
            let combiner = combiner.unwrap();
            assert_eq!(combiner.backend(), backend);
            assert_eq!(combiner.combine(&shares).unwrap().as_slice(), b"forced");
        } else {
            assert_eq!(splitter.unwrap_err(), Error::UnsupportedBackend { backend });
            assert_eq!(combiner.unwrap_err(), Error::UnsupportedBackend { backend });
        }
    }
    assert_eq!(Backend::ALL.len(), 5);
    assert!(Backend::detect().is_supported());
    #[cfg(gf256_backend = "soft")]
    {
        assert_eq!(Backend::detect(), Backend::Soft);
        assert!(Backend::ALL[1..].iter().all(|b| !b.is_supported()));
    }
}

/// This machine (and every machine of the project) has AVX-512 and GFNI: the detected backend
/// must be the fastest one, unless the SIMD backends were compiled out.
#[test]
#[cfg(all(target_arch = "x86_64", not(gf256_backend = "soft")))]
fn detection_picks_the_best_backend() {
    let expected =
        if std::is_x86_feature_detected!("avx512bw") && std::is_x86_feature_detected!("gfni") {
            Backend::Avx512Gfni
        } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("gfni") {
            Backend::Avx2Gfni
        } else if std::is_x86_feature_detected!("avx2") {
            Backend::Avx2
        } else if std::is_x86_feature_detected!("ssse3") {
            Backend::Ssse3
        } else {
            Backend::Soft
        };
    assert_eq!(Backend::detect(), expected);
    assert_eq!(Splitter::new(t(2), 3).unwrap().backend(), expected);
}

#[test]
fn share_refs_owned_and_borrowed_mix() {
    let shares = split(b"mix", 3, 4).unwrap();
    let encoded = shares[3].to_bytes();
    let view = ShareRef::from_bytes(&encoded).unwrap();
    struct Labelled<'a> {
        share: &'a Share,
    }
    impl AsShareRef for Labelled<'_> {
        fn as_share_ref(&self) -> ShareRef<'_> {
            self.share.as_share_ref()
        }
    }
    let wrapped = [
        Labelled { share: &shares[0] },
        Labelled { share: &shares[1] },
    ];
    assert_eq!(
        combine(&wrapped, 3).unwrap_err(),
        Error::NotEnoughShares {
            threshold: 3,
            provided: 2
        }
    );
    let wrapped = [
        Labelled { share: &shares[3] },
        Labelled { share: &shares[1] },
        Labelled { share: &shares[2] },
    ];
    assert_eq!(combine(&wrapped, 3).unwrap().as_slice(), b"mix");
    let views = [shares[0].as_share_ref(), shares[1].as_share_ref(), view];
    assert_eq!(combine(&views, 3).unwrap().as_slice(), b"mix");
    assert_eq!(view.to_share(), shares[3]);
}

#[test]
fn accessors_and_display() {
    let splitter = Splitter::new(t(4), 6).unwrap();
    assert_eq!(splitter.threshold().get(), 4);
    assert_eq!(splitter.share_count(), 6);
    assert_eq!(Combiner::new(t(4)).threshold(), t(4));
    assert_eq!(Backend::Soft.to_string(), "soft");
    assert_eq!(Backend::Avx512Gfni.name(), "avx512-gfni");
    assert_eq!(x(17).to_string(), "17");
    assert_eq!(
        Threshold::try_from(300usize).unwrap_err(),
        Error::ThresholdOutOfRange { threshold: 300 }
    );
}
