//! Sealing and opening.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::format::{Envelope, Header};
use crate::kdf::{KeySchedule, SALT_LEN};
use crate::{Context, Dek, Error, MAX_PLAINTEXT_LEN, Plaintext, aead};

/// Seals `plaintext` under `dek`, bound to `context`, with a fresh salt from the operating
/// system's CSPRNG. This is the normal way to encrypt a secret version.
///
/// Every call draws a new 256-bit salt, from which the AES-256-GCM key, the nonce and the key
/// commitment are derived (see the crate's "Security" section), so sealing many plaintexts
/// under one DEK never reuses a key and nonce pair. The empty plaintext is allowed.
///
/// # Errors
///
/// - [`Error::PlaintextTooLarge`] if `plaintext` is longer than [`MAX_PLAINTEXT_LEN`];
/// - [`Error::Rng`] if the operating system's generator fails.
///
/// # Example
///
/// ```
/// use envelope::{Context, Dek, open, seal};
///
/// let dek = Dek::generate()?;
/// let context = Context::builder()
///     .vault_id("vault-1")
///     .path("db/password")
///     .version(1)
///     .secret_type("password")
///     .custody_mode("standard")
///     .build()?;
/// let envelope = seal(&dek, &context, b"hunter2")?;
/// assert_eq!(open(&dek, &context, &envelope)?.expose_secret(), b"hunter2");
/// # Ok::<(), envelope::Error>(())
/// ```
pub fn seal(dek: &Dek, context: &Context, plaintext: &[u8]) -> Result<Envelope, Error> {
    // Checked before drawing randomness so an oversized input fails the same way every time.
    check_len(plaintext)?;
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(Error::Rng)?;
    seal_with_salt(dek, context, plaintext, salt)
}

/// Seals `plaintext` like [`seal`], drawing the salt (32 bytes, and nothing else) from a
/// caller's cryptographically secure generator instead of the operating system's.
///
/// Use this where the process already keeps a seeded CSPRNG, or to make a test reproducible.
/// The generator must never repeat output for one DEK: a repeated salt repeats the key and the
/// nonce, which breaks GCM.
///
/// # Errors
///
/// [`Error::PlaintextTooLarge`] if `plaintext` is longer than [`MAX_PLAINTEXT_LEN`].
///
/// # Example
///
/// ```
/// use chacha20::ChaCha20Rng;
/// use envelope::rand_core::SeedableRng;
/// use envelope::{Context, Dek, open, seal_with_rng};
///
/// let dek = Dek::generate()?;
/// let context = Context::builder()
///     .vault_id("vault-1")
///     .path("db/password")
///     .version(1)
///     .secret_type("password")
///     .custody_mode("standard")
///     .build()?;
/// // A fixed seed makes the envelope reproducible, which is for tests only.
/// let mut rng = ChaCha20Rng::from_seed([7; 32]);
/// let envelope = seal_with_rng(&dek, &context, b"hunter2", &mut rng)?;
/// assert_eq!(open(&dek, &context, &envelope)?.expose_secret(), b"hunter2");
/// # Ok::<(), envelope::Error>(())
/// ```
pub fn seal_with_rng<R: CryptoRng + ?Sized>(
    dek: &Dek,
    context: &Context,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Envelope, Error> {
    check_len(plaintext)?;
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    seal_with_salt(dek, context, plaintext, salt)
}

/// Opens `envelope` with `dek` under `context` and returns the plaintext.
///
/// The key commitment is checked first, in constant time, so a wrong DEK (such as one
/// rebuilt from a wrong share) or a wrong context is rejected before any decryption and can
/// never yield a different plaintext. Then the GCM tag is checked, in constant time, over the
/// header, the context and the ciphertext, and only then is the ciphertext decrypted. On any
/// failure no plaintext exists: the buffer that would have held it is wiped.
///
/// # Errors
///
/// [`Error::AuthenticationFailed`] for a wrong DEK, a wrong context (any field) or a modified
/// envelope, without saying which.
///
/// # Example
///
/// ```
/// use envelope::{Context, Dek, Error, open, seal};
///
/// let build = |path: &str| {
///     Context::builder()
///         .vault_id("vault-1")
///         .path(path)
///         .version(1)
///         .secret_type("password")
///         .custody_mode("standard")
///         .build()
/// };
/// let dek = Dek::generate()?;
/// let envelope = seal(&dek, &build("db/password")?, b"hunter2")?;
///
/// assert_eq!(open(&dek, &build("db/password")?, &envelope)?.expose_secret(), b"hunter2");
/// // The same envelope presented as another secret's is refused.
/// assert_eq!(
///     open(&dek, &build("db/other")?, &envelope).unwrap_err(),
///     Error::AuthenticationFailed
/// );
/// # Ok::<(), Error>(())
/// ```
pub fn open(dek: &Dek, context: &Context, envelope: &Envelope) -> Result<Plaintext, Error> {
    let schedule = KeySchedule::new(dek, &envelope.header.salt);
    // Branching on the outcome is fine (the caller learns it from the result anyway); the
    // comparison itself is constant time. Failing here, before any decryption, is what makes
    // a wrong DEK detected for sure rather than decrypting to garbage or to another message.
    if !bool::from(schedule.commitment_matches(context, &envelope.header.commitment)) {
        return Err(Error::AuthenticationFailed);
    }
    let (key, nonce) = schedule.cipher_key_and_nonce(context);
    let aad = envelope.header.associated_data(context);
    // The buffer is allocated at its final size, so decryption never reallocates and leaves
    // no unwiped copy of plaintext behind; on failure it is dropped, and wiped, right here.
    let mut buffer = Zeroizing::new(envelope.ciphertext.clone());
    aead::decrypt_in_place(&key, &nonce, &aad, &mut buffer, &envelope.tag)?;
    Ok(Plaintext::new(buffer))
}

/// Refuses plaintexts above [`MAX_PLAINTEXT_LEN`].
fn check_len(plaintext: &[u8]) -> Result<(), Error> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(Error::PlaintextTooLarge {
            len: plaintext.len(),
            max: MAX_PLAINTEXT_LEN,
        });
    }
    Ok(())
}

/// The seal itself, once the salt is chosen.
pub(crate) fn seal_with_salt(
    dek: &Dek,
    context: &Context,
    plaintext: &[u8],
    salt: [u8; SALT_LEN],
) -> Result<Envelope, Error> {
    let schedule = KeySchedule::new(dek, &salt);
    let header = Header::new(salt, schedule.commitment(context), plaintext.len())?;
    let (key, nonce) = schedule.cipher_key_and_nonce(context);
    let aad = header.associated_data(context);
    // The buffer holds plaintext until encryption succeeds, so it is wiped if anything fails;
    // afterwards it holds only ciphertext and is moved out.
    let mut buffer = Zeroizing::new(plaintext.to_vec());
    let tag = aead::encrypt_in_place(&key, &nonce, &aad, &mut buffer)?;
    Ok(Envelope {
        header,
        ciphertext: core::mem::take(&mut *buffer),
        tag,
    })
}

#[cfg(test)]
mod tests;
