//! `FastRng`: AES-256 in counter mode, seeded from the operating system, with fast key
//! erasure and periodic reseeding; and the thread-local instance behind the one-call API.

use core::cell::Cell;
use core::convert::Infallible;
use core::fmt;

use aes::Aes256;
use aes::cipher::array::Array;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use rand_core::{TryCryptoRng, TryRng};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::scratch::Scratch;

use crate::error::Error;

/// Bytes of keystream kept ready for small requests. A 32-byte 2-of-3 split takes 32 of
/// them, so one refill (one AES-256 pass over 4 KiB and one re-key) serves 128 such splits.
const POOL_LEN: usize = 4096;

/// Requests at least this long are generated straight into the caller's buffer.
const DIRECT_MIN: usize = POOL_LEN;

/// The most keystream produced under one key before the key is replaced (fast key erasure).
const SEGMENT_LEN: usize = 64 * 1024;

/// Fresh operating-system entropy is mixed in after this much output (1 MiB). Reseeding costs
/// one `getrandom` call, so even this conservative bound is cheap.
const RESEED_INTERVAL: usize = 1 << 20;

/// An AES-256 key plus a 128-bit counter block: NIST CTR_DRBG's seed length for AES-256.
const SEED_LEN: usize = 48;

/// A fast cryptographically secure generator: AES-256 in counter mode, keyed from the
/// operating system, as NIST SP 800-90A's CTR_DRBG.
///
/// - **Seeding.** [`FastRng::new`] draws a 256-bit key and a 128-bit counter from the OS
///   (`getrandom`).
/// - **Fast key erasure.** Every refill of the internal 4 KiB keystream pool, and every 64 KiB
///   of a large request, ends by generating a new key from the keystream and dropping the old
///   one. Captured state therefore reveals no output produced before the capture (only the
///   unread bytes still in the pool, which are wiped as they are handed out).
/// - **Reseeding.** After 1 MiB of output, fresh OS entropy is XORed into the key and counter.
///   If the OS generator fails at that point (it does not on supported platforms), the
///   generator keeps running on its ratcheted key and retries at the next refill.
/// - **Speed.** AES-NI or VAES is detected at run time by the `aes` crate; small requests are
///   served from the pool (no key setup, no system call), large ones are generated straight
///   into the caller's buffer. The counter blocks are written four per 512-bit store where
///   AVX-512BW is available, then encrypted in place by the `aes` crate. Large splits through
///   this crate's thread-local generator on CPUs with VAES and GFNI do not ask for bytes at
///   all: the split generates the same keystream in vector registers and uses it there as the
///   coefficients, then advances and re-keys the generator exactly as the request would have.
/// - **Hygiene.** Key, round keys, counter and pool are wiped on drop; `Debug` prints nothing
///   of the state.
///
/// # Fork caveat
///
/// A forked child process starts with a copy of its parent's state, including the pool and
/// the thread-local instance used by [`split`](crate::split). Parent and child would then hand
/// out the *same* coefficients, and two splits made with the same coefficients leak the XOR of
/// their secrets. After `fork()`, call [`FastRng::reseed`] on every instance the child keeps
/// and [`FastRng::reseed_thread_local`] in the child before it splits anything (or only fork
/// before the first split).
///
/// # Example
///
/// ```
/// use gf256_shamir::{FastRng, Splitter, Threshold};
/// use rand_core::Rng;
///
/// let mut rng = FastRng::new()?;
/// let mut key = [0u8; 32];
/// rng.fill_bytes(&mut key);
///
/// let splitter = Splitter::new(Threshold::try_from(2u8)?, 3)?;
/// let shares = splitter.split_with_rng(&key, &mut rng)?;
/// assert_eq!(shares.len(), 3);
/// # Ok::<(), gf256_shamir::Error>(())
/// ```
pub struct FastRng {
    /// The current key; replaced after every refill and every segment (fast key erasure) and
    /// wiped on drop. The fused split (`direct_with`) expands it in vector registers.
    key: [u8; 32],
    /// The current key's round keys for the `aes` crate, built on first use after each
    /// re-key and dropped (which wipes them) with the key they belong to. A run of fused split
    /// chunks re-keys without ever needing them.
    cipher: Option<Aes256>,
    /// The next counter block, big-endian.
    counter: u128,
    /// Keystream not handed out yet lives in `pool[pos..]`; `pool[..pos]` has been wiped.
    pool: Box<[u8; POOL_LEN]>,
    pos: usize,
    /// Bytes produced since the last reseed.
    since_reseed: usize,
    /// Tests only: when set, reseeds mix in this deterministic stream instead of operating
    /// system entropy, so two generators from the same seed stay in step across reseeds.
    #[cfg(test)]
    test_entropy: Option<u64>,
}

impl FastRng {
    /// A generator seeded from the operating system.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`] if the operating system's generator fails.
    ///
    /// # Example
    ///
    /// ```
    /// use rand_core::Rng;
    ///
    /// let mut rng = gf256_shamir::FastRng::new()?;
    /// let a = rng.next_u64();
    /// let b = rng.next_u64();
    /// assert_ne!(a, b);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn new() -> Result<FastRng, Error> {
        let mut seed = Scratch::<SEED_LEN>::new();
        getrandom::fill(seed.all()).map_err(Error::Rng)?;
        Ok(FastRng::from_seed_material(seed.all()))
    }

    /// The generator for a given key and counter. Deterministic, so only for this crate's
    /// tests of the keystream.
    fn from_seed_material(seed: &[u8; SEED_LEN]) -> FastRng {
        let (key, counter) = seed.split_at(32);
        let mut counter_bytes = [0u8; 16];
        counter_bytes.copy_from_slice(counter);
        let key = array32(key);
        let rng = FastRng {
            key,
            cipher: None,
            counter: u128::from_be_bytes(counter_bytes),
            pool: Box::new([0u8; POOL_LEN]),
            pos: POOL_LEN,
            since_reseed: 0,
            #[cfg(test)]
            test_entropy: None,
        };
        counter_bytes.as_mut_slice().zeroize();
        rng
    }

    /// Tests only: the generator for a given key and counter whose reseeds mix in a
    /// deterministic stream drawn from `entropy` rather than the operating system's.
    #[cfg(test)]
    pub(crate) fn deterministic(seed: &[u8; SEED_LEN], entropy: u64) -> FastRng {
        let mut rng = FastRng::from_seed_material(seed);
        rng.test_entropy = Some(entropy);
        rng
    }

    /// Fills `fresh` with reseeding entropy: the operating system's (or, in tests of a
    /// deterministic generator, a fixed stream).
    fn entropy(&mut self, fresh: &mut [u8]) -> Result<(), Error> {
        #[cfg(test)]
        if let Some(state) = self.test_entropy.as_mut() {
            for byte in fresh.iter_mut() {
                *state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                *byte = state.to_be_bytes()[0];
            }
            return Ok(());
        }
        getrandom::fill(fresh).map_err(Error::Rng)
    }

    /// Installs a new key. The previous key's round keys (if they were built) are wiped by
    /// `Aes256`'s drop, and its bytes are overwritten here.
    fn set_key(&mut self, key: &[u8; 32]) {
        self.cipher = None;
        self.key = *key;
    }

    /// Mixes fresh operating-system entropy into the key and counter and discards the pooled
    /// keystream. Call it in a child process after `fork()`; it is otherwise done
    /// automatically after every 1 MiB of output.
    ///
    /// # Errors
    ///
    /// [`Error::Rng`] if the operating system's generator fails; the generator is then
    /// unchanged except that its pool was discarded.
    ///
    /// # Example
    ///
    /// ```
    /// let mut rng = gf256_shamir::FastRng::new()?;
    /// rng.reseed()?;
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn reseed(&mut self) -> Result<(), Error> {
        self.discard_pool();
        let mut fresh = Scratch::<SEED_LEN>::new();
        let fresh = fresh.all();
        self.entropy(fresh)?;
        let mut next = Scratch::<32>::new();
        let next = next.all();
        self.keystream(next);
        self.mix_in(next, fresh);
        self.set_key(next);
        Ok(())
    }

    /// The reseed proper, once the next key's keystream `next` was drawn: XORs the fresh
    /// entropy into it and into the counter (XOR, not replace: fresh entropy can only add to
    /// the state, never weaken it).
    fn mix_in(&mut self, next: &mut [u8; 32], fresh: &[u8; SEED_LEN]) {
        for (k, f) in next.iter_mut().zip(fresh.iter()) {
            *k ^= f;
        }
        let mut counter_bytes = [0u8; 16];
        if let Some(fresh_counter) = fresh.get(32..) {
            counter_bytes.copy_from_slice(fresh_counter);
        }
        self.counter ^= u128::from_be_bytes(counter_bytes);
        counter_bytes.as_mut_slice().zeroize();
        self.since_reseed = 0;
    }

    /// Reseeds this thread's instance used by the one-call [`split`](crate::split) and by
    /// [`Splitter::split`](crate::Splitter::split). Call it in a child process after
    /// `fork()` (see the fork caveat above).
    ///
    /// # Errors
    ///
    /// [`Error::Rng`] if the operating system's generator fails.
    ///
    /// # Example
    ///
    /// ```
    /// gf256_shamir::FastRng::reseed_thread_local()?;
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn reseed_thread_local() -> Result<(), Error> {
        with_thread_rng(FastRng::reseed)?
    }

    /// Wipes the unread pool.
    fn discard_pool(&mut self) {
        if let Some(unread) = self.pool.get_mut(self.pos..) {
            unread.zeroize();
        }
        self.pos = POOL_LEN;
    }

    /// Fills `dst` with AES-256-CTR keystream under the current key.
    fn keystream(&mut self, dst: &mut [u8]) {
        ctr(cipher(&mut self.cipher, &self.key), &mut self.counter, dst);
    }

    /// Replaces the key with 32 fresh keystream bytes, so the old key (and all output made
    /// with it) can no longer be recomputed; reseeds from the OS when due.
    fn rekey(&mut self, produced: usize) {
        let mut next = Scratch::<32>::new();
        let next = next.all();
        self.keystream(next);
        self.install(produced, next);
    }

    /// The rest of [`rekey`](FastRng::rekey) once the 32 keystream bytes after `produced`
    /// bytes of output were drawn (and the counter advanced past them): those bytes become
    /// the key, with fresh operating-system entropy mixed in when a reseed is due.
    ///
    /// The same steps, in effect, as `reseed` at that point: it discards the pool and draws
    /// the entropy before the keystream, but neither changes the keystream, and if the
    /// operating system's generator fails the plain new key is installed and the reseed is
    /// retried at the next re-key.
    fn install(&mut self, produced: usize, next: &mut [u8; 32]) {
        self.since_reseed = self.since_reseed.saturating_add(produced);
        if self.since_reseed >= RESEED_INTERVAL {
            self.discard_pool();
            let mut fresh = Scratch::<SEED_LEN>::new();
            let fresh = fresh.all();
            if self.entropy(fresh).is_ok() {
                self.mix_in(next, fresh);
            }
        }
        self.set_key(next);
    }

    /// Refills the pool and re-keys.
    fn refill(&mut self) {
        // Not through `keystream`: the pool is a field of `self` too.
        let cipher = cipher(&mut self.cipher, &self.key);
        ctr(cipher, &mut self.counter, self.pool.as_mut_slice());
        self.pos = 0;
        self.rekey(POOL_LEN);
    }

    /// Does, through `generate`, exactly what [`fill`](FastRng::fill) does for a request of
    /// `len` bytes that it serves straight from the cipher in one segment: `generate(key,
    /// counter, next)` must produce (and consume) the AES-256-CTR keystream under `key` from
    /// the counter block `counter` for the request's `⌈len / 16⌉` blocks, and write the
    /// keystream of the two blocks after them to `next`; the counter is then advanced past all
    /// of them and `next` becomes the key (fast key erasure), with the reseed when due, as
    /// `fill` does.
    ///
    /// This is the fused split's way to use the keystream without writing it to memory. Only
    /// requests that `fill` serves that way qualify: longer than the pool (so the pool is
    /// neither used nor changed, whatever it holds) and at most one segment. For any other
    /// `len` this returns `Ok(false)` without calling `generate`; if `generate` returns
    /// `Ok(false)` or an error (it then produced nothing), the generator is left unchanged.
    pub(crate) fn direct_with<E>(
        &mut self,
        len: usize,
        generate: impl FnOnce(&[u8; 32], u128, &mut [u8; 32]) -> Result<bool, E>,
    ) -> Result<bool, E> {
        if len <= POOL_LEN || !(DIRECT_MIN..=SEGMENT_LEN).contains(&len) {
            return Ok(false);
        }
        let mut next = Scratch::<32>::new();
        let next = next.all();
        if !generate(&self.key, self.counter, next)? {
            return Ok(false);
        }
        // The request's blocks, then the two of the next key.
        let blocks = u128::try_from(len.div_ceil(16)).unwrap_or(0);
        self.counter = self.counter.wrapping_add(blocks).wrapping_add(2);
        self.install(len, next);
        Ok(true)
    }

    /// Fills `dst` with output: from the pool when it fits, otherwise straight from the
    /// cipher in segments, re-keying after each.
    fn fill(&mut self, mut dst: &mut [u8]) {
        while !dst.is_empty() {
            let unread = self.pool.get_mut(self.pos..).unwrap_or_default();
            if dst.len() <= unread.len() {
                let n = dst.len();
                if let Some(src) = unread.get_mut(..n) {
                    dst.copy_from_slice(src);
                    src.zeroize();
                }
                self.pos = self.pos.saturating_add(n);
                return;
            }
            if dst.len() >= DIRECT_MIN {
                for segment in dst.chunks_mut(SEGMENT_LEN) {
                    self.keystream(segment);
                    self.rekey(segment.len());
                }
                return;
            }
            // A small request straddling the end of the pool: take what is left, then refill.
            let n = unread.len();
            let (head, rest) = core::mem::take(&mut dst).split_at_mut(n);
            head.copy_from_slice(unread);
            unread.zeroize();
            self.pos = POOL_LEN;
            dst = rest;
            self.refill();
        }
    }
}

/// The round keys of `key`, built on first use after each re-key (a field-level borrow, so that
/// the caller can hand the counter and the pool to [`ctr`] beside it).
fn cipher<'a>(cipher: &'a mut Option<Aes256>, key: &[u8; 32]) -> &'a Aes256 {
    cipher.get_or_insert_with(|| Aes256::new(&Array::from(*key)))
}

/// AES-256-CTR: fills `dst` with the encryptions of successive big-endian counter blocks.
fn ctr(cipher: &Aes256, counter: &mut u128, dst: &mut [u8]) {
    let whole = dst.len() & !15;
    let (body, tail) = dst.split_at_mut(whole);
    // The counter blocks are written in place and then encrypted in place by the `aes` crate.
    *counter = crate::backend::counter_blocks(body, *counter);
    let (blocks, _) = Array::slice_as_chunks_mut(body);
    cipher.encrypt_blocks(blocks);
    if !tail.is_empty() {
        let mut block = Array::from(counter.to_be_bytes());
        *counter = counter.wrapping_add(1);
        cipher.encrypt_block(&mut block);
        if let Some(bytes) = block.get(..tail.len()) {
            tail.copy_from_slice(bytes);
        }
        block.zeroize();
    }
}

/// The first 32 bytes of `bytes` as an array (zero-padded; callers pass exactly 32).
fn array32(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

impl Drop for FastRng {
    fn drop(&mut self) {
        // The round keys are wiped by `Aes256`'s own drop (the `zeroize` feature of `aes`).
        self.key.zeroize();
        self.pool.as_mut_slice().zeroize();
        self.counter.zeroize();
    }
}

impl ZeroizeOnDrop for FastRng {}

impl fmt::Debug for FastRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastRng").finish_non_exhaustive()
    }
}

impl TryRng for FastRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.fill(&mut bytes);
        let value = u32::from_le_bytes(bytes);
        bytes.zeroize();
        Ok(value)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes);
        let value = u64::from_le_bytes(bytes);
        bytes.zeroize();
        Ok(value)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}

impl TryCryptoRng for FastRng {}

thread_local! {
    /// This thread's generator, created on first use. Boxed so that taking it out of the cell
    /// and putting it back moves a pointer, not key material.
    static THREAD_RNG: Cell<Option<Box<FastRng>>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's [`FastRng`], creating it on first use.
///
/// The generator is taken out of its cell for the duration of `f`, so a (theoretical)
/// re-entrant call would seed a second instance rather than alias the first. If the
/// thread-local has already been destroyed (during thread exit), a fresh generator is used
/// and wiped afterwards.
pub(crate) fn with_thread_rng<T>(f: impl FnOnce(&mut FastRng) -> T) -> Result<T, Error> {
    let rng = THREAD_RNG.try_with(Cell::take).ok().flatten();
    let mut rng = match rng {
        Some(rng) => rng,
        None => Box::new(FastRng::new()?),
    };
    let out = f(&mut rng);
    // If the thread-local is gone, the closure is dropped unrun and the generator with it.
    let _ = THREAD_RNG.try_with(move |cell| cell.set(Some(rng)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    fn from_hex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// NIST SP 800-38A, F.5.5 (CTR-AES256): the keystream is the "output block" column.
    #[test]
    fn keystream_matches_sp800_38a() {
        let mut seed = [0u8; SEED_LEN];
        seed[..32].copy_from_slice(&from_hex(
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
        ));
        seed[32..].copy_from_slice(&from_hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
        let expected = from_hex(concat!(
            "0bdf7df1591716335e9a8b15c860c502",
            "5a6e699d536119065433863c8f657b94",
            "1bc12c9c01610d5d0d8bd6a3378eca62",
            "2956e1c8693536b1bee99c73a31576b6",
        ));
        // Whole blocks, and the same stream cut at a non-block boundary.
        let mut rng = FastRng::from_seed_material(&seed);
        let mut out = [0u8; 64];
        rng.keystream(&mut out);
        assert_eq!(out.as_slice(), expected.as_slice());
        let mut rng = FastRng::from_seed_material(&seed);
        let mut head = [0u8; 21];
        rng.keystream(&mut head);
        assert_eq!(head.as_slice(), &expected[..21]);
        // The tail block was consumed whole: the next call starts at block 3.
        let mut next = [0u8; 16];
        rng.keystream(&mut next);
        assert_eq!(next.as_slice(), &expected[32..48]);
    }

    /// The keystream against the `aes` crate encrypting each big-endian counter block on its
    /// own, over lengths that use the vector counter fill and its scalar remainder, and from
    /// counters whose low 64 bits (or all 128) wrap inside the request.
    #[test]
    fn keystream_matches_block_by_block_aes() {
        for start in [
            0u128,
            0x0F0E_0D0C_0B0A_0908_0706_0504_0302_0100,
            u128::from(u64::MAX) - 9,
            u128::MAX - 6,
        ] {
            for len in [16usize, 48, 64, 100, 1024, 4096 + 37] {
                let mut seed = [0x3Cu8; SEED_LEN];
                seed[32..].copy_from_slice(&start.to_be_bytes());
                let mut rng = FastRng::from_seed_material(&seed);
                let mut actual = vec![0u8; len];
                rng.keystream(&mut actual);

                let cipher = Aes256::new(&Array::from([0x3Cu8; 32]));
                let expected: Vec<u8> = (0..len.div_ceil(16))
                    .flat_map(|i| {
                        let mut block = Array::from(start.wrapping_add(i as u128).to_be_bytes());
                        cipher.encrypt_block(&mut block);
                        block.to_vec()
                    })
                    .take(len)
                    .collect();
                assert_eq!(actual, expected, "start {start:#x}, {len} bytes");
                assert_eq!(rng.counter, start.wrapping_add(len.div_ceil(16) as u128));
            }
        }
    }

    /// Byte frequencies of 1 MiB of output, from a fixed seed (so the statistic is a fixed
    /// number), through the pool and the direct path: below the 99.9th percentile of the
    /// chi-square distribution with 255 degrees of freedom.
    #[test]
    fn output_bytes_are_uniform() {
        let mut rng = FastRng::from_seed_material(&[0x5A; SEED_LEN]);
        let mut counts = [0u64; 256];
        let mut small = [0u8; 100];
        let mut large = vec![0u8; 64 * 1024];
        for round in 0..16 {
            if round % 2 == 0 {
                for _ in 0..40 {
                    rng.fill_bytes(&mut small);
                    small.iter().for_each(|&b| counts[usize::from(b)] += 1);
                }
            }
            rng.fill_bytes(&mut large);
            large.iter().for_each(|&b| counts[usize::from(b)] += 1);
        }
        let total: u64 = counts.iter().sum();
        let expected = total as f64 / 256.0;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 330.5, "chi-square {chi2:.1}");
    }

    #[test]
    fn consumed_pool_bytes_are_wiped() {
        let mut rng = FastRng::new().unwrap();
        let mut out = [0u8; 100];
        rng.fill_bytes(&mut out);
        assert_eq!(rng.pos, 100);
        assert!(rng.pool[..100].iter().all(|&b| b == 0));
        assert!(rng.pool[100..].iter().any(|&b| b != 0));
    }

    #[test]
    fn output_never_repeats_across_pool_and_direct_paths() {
        let mut rng = FastRng::new().unwrap();
        let mut seen = std::collections::HashSet::new();
        // Small reads, a read straddling the pool end, and large direct reads, interleaved.
        for len in [
            16usize,
            4000,
            200,
            DIRECT_MIN,
            3 * SEGMENT_LEN + 17,
            48,
            9000,
        ] {
            let mut out = vec![0u8; len];
            rng.fill_bytes(&mut out);
            for chunk in out.chunks_exact(16) {
                assert!(seen.insert(chunk.to_vec()), "a 16-byte block repeated");
            }
        }
    }

    #[test]
    fn reseeds_after_the_interval() {
        let mut rng = FastRng::new().unwrap();
        let mut out = vec![0u8; RESEED_INTERVAL / 2];
        rng.fill_bytes(&mut out);
        assert!(rng.since_reseed >= RESEED_INTERVAL / 2);
        rng.fill_bytes(&mut out);
        rng.fill_bytes(&mut out);
        assert!(rng.since_reseed < RESEED_INTERVAL, "{}", rng.since_reseed);
    }

    #[test]
    fn debug_prints_no_state() {
        let rng = FastRng::new().unwrap();
        assert_eq!(format!("{rng:?}"), "FastRng { .. }");
    }

    #[test]
    fn thread_local_is_reused_and_reseedable() {
        let a = with_thread_rng(|rng| rng.next_u64()).unwrap();
        let b = with_thread_rng(|rng| rng.next_u64()).unwrap();
        assert_ne!(a, b);
        FastRng::reseed_thread_local().unwrap();
        let c = with_thread_rng(|rng| rng.next_u64()).unwrap();
        assert_ne!(b, c);
    }
}
