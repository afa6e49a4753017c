//! Known-answer vectors from an independent implementation (tests/data/gen_envelope_kat.py,
//! written with pyca/cryptography), checked through the public API only.

use envelope::{Context, Dek, Envelope, open, seal_with_rng};
use serde_json::Value;

use crate::util::{ReplayRng, unhex};

const KAT: &str = include_str!("../data/envelope_v1_kat.json");

#[test]
fn envelopes_match_the_independent_implementation_byte_for_byte() {
    let file: Value = serde_json::from_str(KAT).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 4);
    for v in vectors {
        let text = |name: &str| v[name].as_str().unwrap().to_owned();
        let comment = text("comment");
        let context = Context::builder()
            .vault_id(text("vault_id"))
            .path(text("path"))
            .version(v["version"].as_u64().unwrap())
            .secret_type(text("secret_type"))
            .custody_mode(text("custody_mode"))
            .build()
            .unwrap();
        assert_eq!(
            context.canonical_encoding(),
            unhex(&text("context_encoding")),
            "{comment}"
        );
        let dek = Dek::from_bytes(&unhex(&text("dek"))).unwrap();
        let plaintext = unhex(&text("plaintext"));
        let expected = unhex(&text("envelope"));

        // Sealing with the vector's salt reproduces the vector.
        let mut rng = ReplayRng::new(&unhex(&text("salt")));
        let sealed = seal_with_rng(&dek, &context, &plaintext, &mut rng).unwrap();
        assert_eq!(rng.remaining(), 0, "{comment}");
        assert_eq!(sealed.to_bytes(), expected, "{comment}");

        // And the vector opens.
        let parsed = Envelope::from_bytes(&expected).unwrap();
        assert_eq!(parsed.verify_key(&dek, &context), Ok(()), "{comment}");
        assert_eq!(
            open(&dek, &context, &parsed).unwrap().expose_secret(),
            plaintext,
            "{comment}"
        );
    }
}
