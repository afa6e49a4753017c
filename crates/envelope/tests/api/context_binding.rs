//! An envelope opens only under the exact context it was sealed under.

use envelope::{Context, Error, open, seal};

use crate::util::dek;

/// The fields of a context, to vary one at a time.
#[derive(Clone)]
struct Fields {
    vault_id: String,
    path: String,
    version: u64,
    secret_type: String,
    custody_mode: String,
}

impl Fields {
    fn build(&self) -> Context {
        Context::builder()
            .vault_id(self.vault_id.clone())
            .path(self.path.clone())
            .version(self.version)
            .secret_type(self.secret_type.clone())
            .custody_mode(self.custody_mode.clone())
            .build()
            .unwrap()
    }
}

fn base() -> Fields {
    Fields {
        vault_id: "vault-1".into(),
        path: "team/db/password".into(),
        version: 7,
        secret_type: "password".into(),
        custody_mode: "2of3_multi_hsm".into(),
    }
}

/// Contexts that differ from `base()` in exactly one field, with a name for each.
fn one_field_changed() -> Vec<(&'static str, Fields)> {
    let change = |name, edit: fn(&mut Fields)| {
        let mut fields = base();
        edit(&mut fields);
        (name, fields)
    };
    vec![
        change("vault_id", |f| f.vault_id = "vault-2".into()),
        change("vault_id case", |f| f.vault_id = "Vault-1".into()),
        change("path", |f| f.path = "team/db/password2".into()),
        change("path trailing slash", |f| {
            f.path = "team/db/password/".into()
        }),
        change("path prefix", |f| f.path = "team/db".into()),
        change("version + 1", |f| f.version = 8),
        change("version - 1", |f| f.version = 6),
        change("version 0", |f| f.version = 0),
        change("secret_type", |f| f.secret_type = "api_key".into()),
        change("custody_mode", |f| {
            f.custody_mode = "2of3_client_custody".into()
        }),
        change("custody_mode standard", |f| {
            f.custody_mode = "standard".into()
        }),
        // Bytes moved across a field boundary: equal concatenations, different contexts.
        change("boundary vault/path", |f| {
            f.vault_id = "vault-1t".into();
            f.path = "eam/db/password".into();
        }),
    ]
}

#[test]
fn a_change_in_any_one_field_is_refused() {
    let dek = dek();
    let sealed_under = base().build();
    let envelope = seal(&dek, &sealed_under, b"secret").unwrap();
    for (name, fields) in one_field_changed() {
        let other = fields.build();
        assert_ne!(other, sealed_under, "{name}: not actually different");
        assert_eq!(
            open(&dek, &other, &envelope).unwrap_err(),
            Error::AuthenticationFailed,
            "{name}"
        );
        assert_eq!(
            envelope.verify_key(&dek, &other),
            Err(Error::AuthenticationFailed),
            "{name}"
        );
    }
}

#[test]
fn unicode_is_compared_byte_for_byte() {
    // "é" precomposed (U+00E9) and decomposed (e + U+0301) look alike but are different
    // contexts: callers must normalise before building one.
    let dek = dek();
    let mut composed = base();
    composed.path = "caf\u{e9}".into();
    let mut decomposed = base();
    decomposed.path = "cafe\u{301}".into();
    let envelope = seal(&dek, &composed.build(), b"secret").unwrap();
    assert_eq!(
        open(&dek, &decomposed.build(), &envelope).unwrap_err(),
        Error::AuthenticationFailed
    );
    assert_eq!(
        open(&dek, &composed.build(), &envelope)
            .unwrap()
            .expose_secret(),
        b"secret"
    );
}

#[test]
fn an_equal_context_built_separately_opens() {
    let dek = dek();
    let envelope = seal(&dek, &base().build(), b"secret").unwrap();
    let rebuilt = base().build();
    assert_eq!(
        open(&dek, &rebuilt, &envelope).unwrap().expose_secret(),
        b"secret"
    );
}
