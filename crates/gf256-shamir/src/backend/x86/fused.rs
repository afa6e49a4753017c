//! The fused large split: AES-256-CTR keystream generated in 512-bit registers with VAES and
//! used there as the polynomial coefficients, evaluated with `GF2P8MULB` and stored straight
//! into every share. The coefficients never touch memory.
//!
//! The keystream is the one `FastRng` produces for a direct request (see `FastRng::direct_with`
//! in `rng.rs`): block `i` of the request is the AES-256 encryption of the big-endian counter
//! `counter + i`, and a split chunk of `L` bytes with `C` coefficient degrees takes row `c` (the
//! coefficients of degree `c + 1`) from request bytes `c·L .. (c + 1)·L`. The AES rounds are the
//! AES-NI/VAES instructions on the standard key schedule, expanded with `AESKEYGENASSIST`;
//! both are tested against the `aes` crate.
//!
//! Constant time: the secret, the keystream and the shares only flow through vector
//! instructions whose timing does not depend on their operands (`VAESENC`, `VGF2P8MULB`, XOR,
//! loads and stores at public addresses). Loops and masks depend on lengths, addresses and
//! x-coordinates only.

use core::arch::x86_64::{
    __m128i, __m512i, __mmask64, _mm_aesenc_si128, _mm_aesenclast_si128, _mm_aeskeygenassist_si128,
    _mm_loadu_si128, _mm_set_epi64x, _mm_sfence, _mm_shuffle_epi32, _mm_slli_si128,
    _mm_storeu_si128, _mm_xor_si128, _mm512_add_epi8, _mm512_aesenc_epi128,
    _mm512_aesenclast_epi128, _mm512_broadcast_i32x4, _mm512_gf2p8mul_epi8, _mm512_loadu_si512,
    _mm512_mask_storeu_epi8, _mm512_maskz_loadu_epi8, _mm512_permutex2var_epi8, _mm512_set1_epi8,
    _mm512_setzero_si512, _mm512_storeu_si512, _mm512_stream_si512, _mm512_xor_si512,
};

use zeroize::Zeroize;

use super::super::Keystream;
use super::{big_endian_blocks, counter_words, lane, low_mask, span, span_mut, window, window_mut};

/// Whether this CPU runs the fused kernel: VAES and AES-NI for the cipher, AVX-512F/BW and
/// GFNI for the field arithmetic and the masked stores.
pub(in crate::backend) fn is_supported() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("gfni")
        && std::is_x86_feature_detected!("vaes")
        && std::is_x86_feature_detected!("aes")
}

/// Rounds of AES-256, and round keys (one more than rounds).
const ROUNDS: usize = 14;
const ROUND_KEYS: usize = ROUNDS + 1;

/// The 15 round keys of AES-256's standard key schedule, wiped on drop.
pub(in crate::backend) struct RoundKeys([[u8; 16]; ROUND_KEYS]);

impl Drop for RoundKeys {
    fn drop(&mut self) {
        self.0.as_flattened_mut().zeroize();
    }
}

impl RoundKeys {
    /// The round keys of a 256-bit key.
    ///
    /// # Safety
    ///
    /// AES-NI must be available ([`is_supported`] returned true).
    #[target_feature(enable = "aes")]
    pub(in crate::backend) unsafe fn expand(key: &[u8; 32]) -> RoundKeys {
        let mut out = RoundKeys([[0u8; 16]; ROUND_KEYS]);
        let (lo, hi) = key.split_at(16);
        let mut a = load128(lo);
        let mut b = load128(hi);
        store128(&mut out.0, 0, a);
        store128(&mut out.0, 1, b);
        // FIPS 197's schedule for Nk = 8, in the form of Intel's AES-NI white paper: even round
        // keys from `SubWord(RotWord(previous word)) ^ rcon`, odd ones from `SubWord(previous
        // word)`. The round constant is an immediate, hence one call per constant.
        a = even_round_key(a, _mm_aeskeygenassist_si128::<0x01>(b));
        store128(&mut out.0, 2, a);
        b = odd_round_key(b, a);
        store128(&mut out.0, 3, b);
        a = even_round_key(a, _mm_aeskeygenassist_si128::<0x02>(b));
        store128(&mut out.0, 4, a);
        b = odd_round_key(b, a);
        store128(&mut out.0, 5, b);
        a = even_round_key(a, _mm_aeskeygenassist_si128::<0x04>(b));
        store128(&mut out.0, 6, a);
        b = odd_round_key(b, a);
        store128(&mut out.0, 7, b);
        a = even_round_key(a, _mm_aeskeygenassist_si128::<0x08>(b));
        store128(&mut out.0, 8, a);
        b = odd_round_key(b, a);
        store128(&mut out.0, 9, b);
        a = even_round_key(a, _mm_aeskeygenassist_si128::<0x10>(b));
        store128(&mut out.0, 10, a);
        b = odd_round_key(b, a);
        store128(&mut out.0, 11, b);
        a = even_round_key(a, _mm_aeskeygenassist_si128::<0x20>(b));
        store128(&mut out.0, 12, a);
        b = odd_round_key(b, a);
        store128(&mut out.0, 13, b);
        a = even_round_key(a, _mm_aeskeygenassist_si128::<0x40>(b));
        store128(&mut out.0, 14, a);
        out
    }

    /// Round key `i`, broadcast to the four 128-bit lanes.
    #[target_feature(enable = "avx512f")]
    fn broadcast(&self, i: usize) -> __m512i {
        match self.0.get(i) {
            Some(rk) => _mm512_broadcast_i32x4(load128(rk)),
            None => _mm512_setzero_si512(),
        }
    }
}

/// `w ^ (w << 32) ^ (w << 64) ^ (w << 96)`: the running XOR of the four words of a round key.
#[target_feature(enable = "sse2")]
fn prefix_xor(w: __m128i) -> __m128i {
    let mut w = w;
    let mut shifted = _mm_slli_si128::<4>(w);
    w = _mm_xor_si128(w, shifted);
    shifted = _mm_slli_si128::<4>(shifted);
    w = _mm_xor_si128(w, shifted);
    shifted = _mm_slli_si128::<4>(shifted);
    _mm_xor_si128(w, shifted)
}

/// The next even round key from the previous even one and `AESKEYGENASSIST(odd, rcon)`.
#[target_feature(enable = "sse2")]
fn even_round_key(prev: __m128i, assist: __m128i) -> __m128i {
    _mm_xor_si128(prefix_xor(prev), _mm_shuffle_epi32::<0xFF>(assist))
}

/// The next odd round key from the previous odd one and the even key just made.
#[target_feature(enable = "aes")]
fn odd_round_key(prev: __m128i, even: __m128i) -> __m128i {
    let assist = _mm_aeskeygenassist_si128::<0x00>(even);
    _mm_xor_si128(prefix_xor(prev), _mm_shuffle_epi32::<0xAA>(assist))
}

/// The first 16 bytes of `s` (zeros if it is shorter; callers pass 16).
#[target_feature(enable = "sse2")]
fn load128(s: &[u8]) -> __m128i {
    match s.first_chunk::<16>() {
        // SAFETY: `bytes` is a reference to 16 readable bytes; the load is unaligned.
        Some(bytes) => unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) },
        None => _mm_set_epi64x(0, 0),
    }
}

/// Stores `v` as round key `i`.
#[target_feature(enable = "sse2")]
fn store128(keys: &mut [[u8; 16]; ROUND_KEYS], i: usize, v: __m128i) {
    if let Some(rk) = keys.get_mut(i) {
        // SAFETY: `rk` is a reference to 16 writable bytes; the store is unaligned.
        unsafe { _mm_storeu_si128(rk.as_mut_ptr().cast(), v) };
    }
}

/// The AES-256 round keys in registers, and the counter of the request's first block.
struct Cipher {
    rk: [__m512i; ROUND_KEYS],
    /// The counter's high 64 bits, and the low 64 bits of block 0 of the request. The caller
    /// checked that the low word does not wrap over the request.
    hi: u64,
    lo: u64,
}

impl Cipher {
    /// The four big-endian counter blocks `block .. block + 4` of the request.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn counters(&self, block: u64) -> __m512i {
        big_endian_blocks(counter_words(self.hi, self.lo.wrapping_add(block)))
    }

    /// Encrypts `K` vectors of four blocks each, round by round across all of them, so that
    /// `K` independent `VAESENC` chains hide the instruction's latency.
    #[target_feature(enable = "avx512f,vaes")]
    fn encrypt<const K: usize>(&self, states: &mut [__m512i; K]) {
        let [first, middle @ .., last] = &self.rk;
        for s in states.iter_mut() {
            *s = _mm512_xor_si512(*s, *first);
        }
        for rk in middle {
            for s in states.iter_mut() {
                *s = _mm512_aesenc_epi128(*s, *rk);
            }
        }
        for s in states.iter_mut() {
            *s = _mm512_aesenclast_epi128(*s, *last);
        }
    }
}

impl Drop for Cipher {
    fn drop(&mut self) {
        // The broadcast round keys are key material too.
        self.rk.zeroize();
    }
}

/// Where the 64 bytes of one column of a chunk go: which lanes are stored, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lanes {
    /// All 64, with a non-temporal store (the address is 64-byte aligned).
    Stream,
    /// All 64, with an ordinary store.
    All,
    /// Only the lanes of the mask (the head or the tail of a chunk whose outputs start off a
    /// 64-byte boundary).
    Masked(__mmask64),
}

/// The `U` vectors at `s[off..off + 64·U]` (only the lanes of a mask when `U` is 1 and the
/// column is masked), zeros if those bytes do not exist (callers check lengths first).
#[target_feature(enable = "avx512f,avx512bw")]
fn load_columns<const U: usize>(s: &[u8], off: usize, lanes: Lanes) -> [__m512i; U] {
    let mut v = [_mm512_setzero_si512(); U];
    if let (Lanes::Masked(mask), Some(bytes)) = (lanes, window::<64>(s, off)) {
        if let Some(first) = v.first_mut() {
            // SAFETY: only the lanes of the mask are read, all inside the 64 readable bytes of
            // `bytes`.
            *first = unsafe { _mm512_maskz_loadu_epi8(mask, bytes.as_ptr().cast()) };
        }
        return v;
    }
    if let Some(bytes) = span(s, off, 64usize.wrapping_mul(U)) {
        let ptr = bytes.as_ptr();
        for (u, slot) in v.iter_mut().enumerate() {
            // SAFETY: `bytes` holds `64·U` readable bytes, so bytes `64·u .. 64·u + 64` of it
            // are readable for every `u < U`; the load is unaligned.
            *slot = unsafe { _mm512_loadu_si512(ptr.add(u.wrapping_mul(64)).cast()) };
        }
    }
    v
}

/// Stores the `U` vectors `v` at `s[off..off + 64·U]` as `lanes` says (nothing if those bytes
/// do not exist): one bounds and alignment check per call, not per vector.
#[target_feature(enable = "avx512f,avx512bw")]
fn store_columns<const U: usize>(s: &mut [u8], off: usize, lanes: Lanes, v: &[__m512i; U]) {
    if let Lanes::Masked(mask) = lanes {
        if let (Some(bytes), Some(first)) = (window_mut::<64>(s, off), v.first()) {
            // SAFETY: only the lanes of the mask are written, all inside the 64 writable bytes
            // of `bytes`.
            unsafe { _mm512_mask_storeu_epi8(bytes.as_mut_ptr().cast(), mask, *first) }
        }
        return;
    }
    let Some(bytes) = span_mut(s, off, 64usize.wrapping_mul(U)) else {
        return;
    };
    let ptr = bytes.as_mut_ptr();
    if lanes == Lanes::Stream && ptr.addr() & 63 == 0 {
        for (u, x) in v.iter().enumerate() {
            // SAFETY: `bytes` holds `64·U` writable bytes from the 64-byte aligned `ptr`, so
            // `ptr + 64·u` is 64-byte aligned, as `_mm512_stream_si512` requires, with 64
            // writable bytes behind it. `split_chunk` calls `_mm_sfence` before it returns,
            // which orders the weakly ordered stores before any later access to this memory.
            unsafe { _mm512_stream_si512(ptr.add(u.wrapping_mul(64)).cast(), *x) };
        }
    } else {
        for (u, x) in v.iter().enumerate() {
            // SAFETY: `bytes` holds `64·U` writable bytes, so bytes `64·u .. 64·u + 64` of it
            // are writable for every `u < U`; the store is unaligned.
            unsafe { _mm512_storeu_si512(ptr.add(u.wrapping_mul(64)).cast(), *x) };
        }
    }
}

/// One chunk of a fused split (see `Fused::split_chunk` in `backend/mod.rs`): `C` coefficient
/// degrees, shares evaluated by Horner's rule at `xs[r]` into bytes `start .. start +
/// secret.len()` of `outputs[r]`.
///
/// The caller has checked: every output holds those bytes, `secret.len()` is a multiple of
/// 64, `xs.len() == outputs.len()`, and the low 64 bits of `counter` do not wrap over the
/// `C · secret.len() / 16` blocks of the request.
///
/// `stream` asks for non-temporal stores (a large secret). They are used when every output is
/// at the same distance `m` from a 64-byte boundary, and `m` is a multiple of 16 or the CPU has
/// AVX-512 VBMI: the columns then start `64 - m` bytes into the chunk, so the output vectors are
/// aligned, and a masked head and tail cover the rest. Otherwise the columns start at the chunk
/// and ordinary unaligned stores are used.
///
/// # Safety
///
/// VAES, AES-NI, AVX-512F, AVX-512BW and GFNI must be available ([`is_supported`]).
pub(in crate::backend) unsafe fn split_chunk(
    keystream: Keystream<'_>,
    secret: &[u8],
    start: usize,
    outputs: &mut [&mut [u8]],
    xs: &[u8],
    degree: usize,
    stream: bool,
) {
    // SAFETY: the caller guarantees AES-NI.
    let keys = unsafe { RoundKeys::expand(keystream.key) };
    let counter = keystream.counter;
    let job = Chunk {
        secret,
        start,
        stream,
        vbmi: std::is_x86_feature_detected!("avx512vbmi"),
    };
    // SAFETY: the caller guarantees every feature of the kernels.
    unsafe {
        match degree {
            1 => chunk_n::<1, 8, 8>(&keys, counter, &job, outputs, xs),
            2 => chunk_n::<2, 4, 8>(&keys, counter, &job, outputs, xs),
            4 => chunk_n::<4, 2, 8>(&keys, counter, &job, outputs, xs),
            8 => chunk_n::<8, 1, 8>(&keys, counter, &job, outputs, xs),
            _ => return,
        }
    }
    let blocks = degree.wrapping_mul(secret.len() >> 4);
    let after = counter.wrapping_add(u128::try_from(blocks).unwrap_or(0));
    // SAFETY: the caller guarantees AES-NI.
    unsafe { next_key(&keys, after, keystream.next_key) };
}

/// The keystream of the blocks `counter` and `counter + 1` into `out` (`FastRng`'s next key),
/// with one-block AES-NI rounds.
#[target_feature(enable = "aes")]
fn next_key(keys: &RoundKeys, counter: u128, out: &mut [u8; 32]) {
    let (first, rest) = keys.0.split_at(1);
    let (middle, last) = rest.split_at(ROUNDS.wrapping_sub(1));
    for (i, half) in out.chunks_exact_mut(16).enumerate() {
        let block = counter
            .wrapping_add(u128::try_from(i).unwrap_or(0))
            .to_be_bytes();
        let mut state = load128(&block);
        for rk in first {
            state = _mm_xor_si128(state, load128(rk));
        }
        for rk in middle {
            state = _mm_aesenc_si128(state, load128(rk));
        }
        for rk in last {
            state = _mm_aesenclast_si128(state, load128(rk));
        }
        if let Some(bytes) = half.first_chunk_mut::<16>() {
            // SAFETY: `bytes` is a reference to 16 writable bytes; the store is unaligned.
            unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), state) };
        }
    }
}

/// The public shape of one chunk: its secret bytes, where they start in the outputs, and
/// whether non-temporal stores were asked for.
struct Chunk<'a> {
    secret: &'a [u8],
    start: usize,
    stream: bool,
    /// Whether the CPU has AVX-512 VBMI (for outputs at other distances from a 64-byte
    /// boundary than multiples of 16).
    vbmi: bool,
}

/// [`split_chunk`] for `C` degrees, `U` columns per step and `K = C · U` cipher states in
/// flight (8: enough to cover `VAESENC`'s latency at one instruction per cycle).
#[target_feature(enable = "avx512f,avx512bw,gfni,vaes,aes")]
fn chunk_n<const C: usize, const U: usize, const K: usize>(
    keys: &RoundKeys,
    counter: u128,
    job: &Chunk<'_>,
    outputs: &mut [&mut [u8]],
    xs: &[u8],
) {
    let len = job.secret.len();
    let stream = job.stream;
    // Filled in place rather than moved in, so that no stack copy of the broadcast round keys
    // outlives `cipher`, whose drop wipes them.
    let mut cipher = Cipher {
        rk: [_mm512_setzero_si512(); ROUND_KEYS],
        hi: u64::try_from(counter >> 64).unwrap_or(0),
        lo: u64::try_from(counter & u128::from(u64::MAX)).unwrap_or(0),
    };
    for (i, slot) in cipher.rk.iter_mut().enumerate() {
        *slot = keys.broadcast(i);
    }
    // Blocks per coefficient row.
    let row_blocks = u64::try_from(len >> 4).unwrap_or(0);

    // The head: outputs `m` bytes past a 64-byte boundary get their first `64 - m` bytes from a
    // masked column at offset 0, and their last `m` from a masked column at the end; the body
    // between is streamed, its columns starting `64 - m` bytes into the chunk. For `m` a
    // multiple of 16 that is a block boundary, so the body's keystream is generated in place;
    // otherwise (with VBMI) it is joined from the block-aligned columns (`shifted_body`).
    // Without a common alignment, or for small secrets, the columns start at the chunk and are
    // stored unaligned. Addresses are public.
    let misalignment = common_misalignment(outputs, job.start);
    let (head, shifted) = match misalignment {
        Some(m) if stream && m & 15 == 0 => (64usize.wrapping_sub(m) & 63, false),
        Some(m) if stream && job.vbmi => (64usize.wrapping_sub(m) & 63, true),
        _ => (0, false),
    };
    let streaming = stream && (shifted || misalignment.is_some_and(|m| m & 15 == 0));
    let body = if streaming { Lanes::Stream } else { Lanes::All };

    let grid = Grid {
        cipher: &cipher,
        row_blocks,
        job,
    };
    if head > 0 && len >= 64 {
        column::<C, 1, C>(&grid, outputs, xs, 0, Lanes::Masked(low_mask(head)));
    }
    if shifted {
        // SAFETY: `shifted` is only set when `job.vbmi` is, which `split_chunk` sets from this
        // CPU's detected AVX-512 VBMI; the other features are this function's own.
        unsafe { shifted_body::<C, U, K>(&grid, outputs, xs, head) };
    } else {
        let mut off = head;
        while off.wrapping_add(64usize.wrapping_mul(U)) <= len {
            column::<C, U, K>(&grid, outputs, xs, off, body);
            off = off.wrapping_add(64usize.wrapping_mul(U));
        }
        while off.wrapping_add(64) <= len {
            column::<C, 1, C>(&grid, outputs, xs, off, body);
            off = off.wrapping_add(64);
        }
    }
    if head > 0 && len >= 64 {
        // The last `64 - head` bytes: the lanes from `head` up of the chunk's last 64 bytes.
        let tail = Lanes::Masked(!low_mask(head));
        column::<C, 1, C>(&grid, outputs, xs, len.wrapping_sub(64), tail);
    }
    if streaming {
        // Orders the non-temporal stores before anything the caller does next.
        _mm_sfence();
    }
}

/// What every column of a chunk shares: the cipher, the blocks per coefficient row, the chunk.
struct Grid<'a> {
    cipher: &'a Cipher,
    row_blocks: u64,
    job: &'a Chunk<'a>,
}

/// `U` adjacent 64-byte columns starting at byte `off` of the chunk (a multiple of 16): the
/// keystream of each coefficient row at those bytes, then every share.
#[target_feature(enable = "avx512f,avx512bw,gfni,vaes,aes")]
fn column<const C: usize, const U: usize, const K: usize>(
    grid: &Grid<'_>,
    outputs: &mut [&mut [u8]],
    xs: &[u8],
    off: usize,
    lanes: Lanes,
) {
    let ks = keystream::<C, U, K>(grid, off);
    evaluate::<C, U, K>(grid, outputs, xs, (off, lanes), &ks);
}

/// The keystream of `U` adjacent 64-byte columns from byte `off` of the chunk (a multiple of
/// 16) of every coefficient row: state `u·C + c` is row `c` of column `u`, four blocks `c` rows
/// and `4·u` blocks into the request.
#[target_feature(enable = "avx512f,avx512bw,vaes")]
fn keystream<const C: usize, const U: usize, const K: usize>(
    grid: &Grid<'_>,
    off: usize,
) -> [__m512i; K] {
    let (cipher, row_blocks) = (grid.cipher, grid.row_blocks);
    let first = u64::try_from(off >> 4).unwrap_or(0);
    let mut ks = [_mm512_setzero_si512(); K];
    for (u, column) in ks.chunks_exact_mut(C).enumerate() {
        let column_block = first.wrapping_add(u64::try_from(u).unwrap_or(0).wrapping_mul(4));
        for (c, state) in column.iter_mut().enumerate() {
            let row = u64::try_from(c).unwrap_or(0).wrapping_mul(row_blocks);
            *state = cipher.counters(column_block.wrapping_add(row));
        }
    }
    cipher.encrypt(&mut ks);
    ks
}

/// Every share of `U` adjacent columns from byte `at.0` of the chunk, stored as `at.1` says,
/// with `ks` as the coefficients (state `u·C + c` is row `c` of column `u`).
#[target_feature(enable = "avx512f,avx512bw,gfni")]
fn evaluate<const C: usize, const U: usize, const K: usize>(
    grid: &Grid<'_>,
    outputs: &mut [&mut [u8]],
    xs: &[u8],
    at: (usize, Lanes),
    ks: &[__m512i; K],
) {
    let (off, lanes) = at;
    let base = load_columns::<U>(grid.job.secret, off, lanes);
    let dst = grid.job.start.wrapping_add(off);
    for (out, x) in outputs.iter_mut().zip(xs) {
        let x = _mm512_set1_epi8(lane(*x));
        let mut y = base;
        for (u, y) in y.iter_mut().enumerate() {
            // Horner's rule from the leading coefficient down to the secret.
            let row = |c: usize| match ks.get(u.wrapping_mul(C).wrapping_add(c)) {
                Some(k) => *k,
                None => _mm512_setzero_si512(),
            };
            let mut acc = row(C.wrapping_sub(1));
            let mut c = C.wrapping_sub(1);
            while c > 0 {
                c = c.wrapping_sub(1);
                acc = _mm512_xor_si512(_mm512_gf2p8mul_epi8(acc, x), row(c));
            }
            *y = _mm512_xor_si512(_mm512_gf2p8mul_epi8(acc, x), *y);
        }
        store_columns::<U>(out, dst, lanes, &y);
    }
}

/// Lane numbers 0 to 63, for the byte permutation of [`shifted_body`].
const LANES: [u8; 64] = {
    let mut lanes = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        // Evaluated at compile time: `i < 64`, so the cast is exact and the index in bounds.
        #[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]
        {
            lanes[i] = i as u8;
        }
        #[allow(clippy::arithmetic_side_effects)]
        {
            i += 1;
        }
    }
    lanes
};

/// The body of a chunk whose outputs all sit `64 - head` bytes past a 64-byte boundary, `head`
/// not a multiple of 16 (owned shares, whose y-values start one byte into their buffer): output
/// column `j` is chunk bytes `head + 64·j ..`, 64-byte aligned in every output, so it is
/// streamed; its coefficients are bytes `head .. head + 64` of keystream columns `j` and
/// `j + 1` (at block boundaries), joined with one `VPERMT2B` per coefficient row. Each
/// keystream column is generated once and carried to the next step. The head and the tail of
/// the chunk are the caller's masked columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,gfni,vaes,aes")]
fn shifted_body<const C: usize, const U: usize, const K: usize>(
    grid: &Grid<'_>,
    outputs: &mut [&mut [u8]],
    xs: &[u8],
    head: usize,
) {
    let iota = load_columns::<1>(&LANES, 0, Lanes::All);
    let Some(iota) = iota.first() else {
        return;
    };
    let idx = _mm512_add_epi8(
        *iota,
        _mm512_set1_epi8(lane(u8::try_from(head).unwrap_or(0))),
    );
    // Whole output columns between the head and the tail.
    let columns = (grid.job.secret.len() >> 6).saturating_sub(1);
    let mut prev = keystream::<C, 1, C>(grid, 0);
    let mut j = 0usize;
    while j.wrapping_add(U) <= columns {
        let ks = keystream::<C, U, K>(grid, j.wrapping_add(1).wrapping_mul(64));
        let coeffs = join::<C, U, K>(&mut prev, &ks, idx);
        let off = head.wrapping_add(j.wrapping_mul(64));
        evaluate::<C, U, K>(grid, outputs, xs, (off, Lanes::Stream), &coeffs);
        j = j.wrapping_add(U);
    }
    while j < columns {
        let ks = keystream::<C, 1, C>(grid, j.wrapping_add(1).wrapping_mul(64));
        let coeffs = join::<C, 1, C>(&mut prev, &ks, idx);
        let off = head.wrapping_add(j.wrapping_mul(64));
        evaluate::<C, 1, C>(grid, outputs, xs, (off, Lanes::Stream), &coeffs);
        j = j.wrapping_add(1);
    }
}

/// The coefficients of `U` shifted columns: for column `u` and row `c`, the bytes `idx` selects
/// from keystream column `u - 1` (`prev` for `u = 0`) followed by column `u`. Leaves the last
/// keystream column in `prev` for the next step.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn join<const C: usize, const U: usize, const K: usize>(
    prev: &mut [__m512i; C],
    ks: &[__m512i; K],
    idx: __m512i,
) -> [__m512i; K] {
    let mut out = [_mm512_setzero_si512(); K];
    for (u, column) in out.chunks_exact_mut(C).enumerate() {
        for (c, slot) in column.iter_mut().enumerate() {
            let lo = match u.checked_sub(1) {
                Some(p) => ks.get(p.wrapping_mul(C).wrapping_add(c)),
                None => prev.get(c),
            };
            let hi = ks.get(u.wrapping_mul(C).wrapping_add(c));
            if let (Some(lo), Some(hi)) = (lo, hi) {
                *slot = _mm512_permutex2var_epi8(*lo, idx, *hi);
            }
        }
    }
    if let Some(last) = ks.get(K.saturating_sub(C)..) {
        for (p, k) in prev.iter_mut().zip(last) {
            *p = *k;
        }
    }
    out
}

/// The distance of byte `start` of every output from the 64-byte boundary below it, if they
/// all share it.
fn common_misalignment(outputs: &[&mut [u8]], start: usize) -> Option<usize> {
    let at = |out: &&mut [u8]| out.as_ptr().addr().wrapping_add(start) & 63;
    let first = at(outputs.first()?);
    if outputs.iter().all(|out| at(out) == first) {
        Some(first)
    } else {
        None
    }
}

#[cfg(test)]
// Test patterns: the byte values wrap on purpose.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use aes::Aes256;
    use aes::cipher::array::Array;
    use aes::cipher::{BlockCipherEncrypt, KeyInit};

    /// The key schedule against the `aes` crate: encrypting with the expanded keys (AES-NI,
    /// one block at a time) gives the `aes` crate's ciphertext, for several keys.
    #[test]
    fn round_keys_encrypt_as_the_aes_crate() {
        if !is_supported() {
            return;
        }
        for seed in 0u8..8 {
            let key: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ seed);
            // SAFETY: `is_supported` checked AES-NI.
            let keys = unsafe { RoundKeys::expand(&key) };
            let reference = Aes256::new(&Array::from(key));
            for block in 0u128..4 {
                let plain =
                    (block.wrapping_mul(0x0123_4567_89AB_CDEF) ^ u128::from(seed)).to_be_bytes();
                let mut expected = Array::from(plain);
                reference.encrypt_block(&mut expected);
                // SAFETY: `is_supported` checked VAES and AVX-512F.
                let actual = unsafe { encrypt_one(&keys, plain) };
                assert_eq!(
                    actual.as_slice(),
                    expected.as_slice(),
                    "key {seed} block {block}"
                );
            }
        }
    }

    /// The keystream blocks `counter, counter + 1, …` from the `aes` crate, one at a time.
    fn reference_keystream(key: &[u8; 32], counter: u128, len: usize) -> Vec<u8> {
        let cipher = Aes256::new(&Array::from(*key));
        (0..len.div_ceil(16))
            .flat_map(|i| {
                let mut block = Array::from(counter.wrapping_add(i as u128).to_be_bytes());
                cipher.encrypt_block(&mut block);
                block.to_vec()
            })
            .take(len)
            .collect()
    }

    /// NIST SP 800-38A, F.5.5 (CTR-AES256) through the kernel: a zero secret, one coefficient
    /// row and the share at x = 1 is the keystream itself.
    #[test]
    fn kernel_keystream_matches_sp800_38a() {
        if !is_supported() {
            eprintln!("this CPU lacks VAES/GFNI/AVX-512: the fused kernel does not run here");
            return;
        }
        let hex = |h: &str| -> Vec<u8> {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        };
        let key: [u8; 32] = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .try_into()
            .unwrap();
        let counter =
            u128::from_be_bytes(hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").try_into().unwrap());
        let expected = hex(concat!(
            "0bdf7df1591716335e9a8b15c860c502",
            "5a6e699d536119065433863c8f657b94",
            "1bc12c9c01610d5d0d8bd6a3378eca62",
            "2956e1c8693536b1bee99c73a31576b6",
        ));
        let secret = [0u8; 64];
        let mut out = [0u8; 64];
        let mut next = [0u8; 32];
        let keystream = Keystream {
            key: &key,
            counter,
            next_key: &mut next,
        };
        // SAFETY: `is_supported` checked every feature the kernel needs.
        unsafe { split_chunk(keystream, &secret, 0, &mut [&mut out[..]], &[1], 1, false) };
        assert_eq!(out.as_slice(), expected.as_slice());
        assert_eq!(
            next.as_slice(),
            &reference_keystream(&key, counter, 96)[64..]
        );
    }

    /// The kernel against a byte-by-byte reference built on the `aes` crate's keystream and the
    /// field's scalar multiply: every fused degree, lengths of one to many columns, share
    /// counts up to 17, outputs at a common 64-byte alignment, at a common offset of 16, 32 or
    /// 48 (streamed after a masked head), at odd or different offsets (not streamed), with and
    /// without streaming, and counters near the low word's end. Guard bytes around every output
    /// must be left alone.
    #[test]
    fn kernel_matches_the_reference() {
        if !is_supported() {
            eprintln!("this CPU lacks VAES/GFNI/AVX-512: the fused kernel does not run here");
            return;
        }
        let key: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(29) ^ 0x5C);
        let mut seed = 0x1234_5678_9ABC_DEF0u64;
        let mut bytes = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed.to_le_bytes()[2]
                })
                .collect()
        };
        for degree in [1usize, 2, 4, 8] {
            for len in [64usize, 128, 192, 512, 1088, 4096] {
                let blocks = (degree * len / 16) as u128;
                for counter in [
                    0u128,
                    0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210,
                    (1u128 << 64) - blocks,
                    u128::MAX - blocks + 1,
                ] {
                    for count in [1usize, 3, 9, 17] {
                        for offsets in [[0usize; 3], [16; 3], [48; 3], [5; 3], [0, 16, 32]] {
                            for stream in [false, true] {
                                let secret = bytes(len);
                                let xs: Vec<u8> =
                                    (1..=count as u8).map(|x| x.wrapping_mul(13)).collect();
                                let ks = reference_keystream(&key, counter, degree * len + 32);
                                let mut next = [0u8; 32];
                                let expected: Vec<Vec<u8>> = xs
                                    .iter()
                                    .map(|&x| {
                                        (0..len)
                                            .map(|i| {
                                                let mut acc = secret[i];
                                                let mut power = x;
                                                for c in 0..degree {
                                                    acc ^=
                                                        crate::field::mul(power, ks[c * len + i]);
                                                    power = crate::field::mul(power, x);
                                                }
                                                acc
                                            })
                                            .collect()
                                    })
                                    .collect();
                                let mut backing: Vec<Vec<u8>> =
                                    vec![vec![0xA5u8; len + 256]; count];
                                let skips: Vec<usize> = backing
                                    .iter()
                                    .enumerate()
                                    .map(|(r, b)| {
                                        64 + (64 - (b.as_ptr() as usize) % 64) % 64 + offsets[r % 3]
                                    })
                                    .collect();
                                {
                                    let mut outs: Vec<&mut [u8]> = backing
                                        .iter_mut()
                                        .zip(&skips)
                                        .map(|(b, &skip)| &mut b[skip - 64..skip + len])
                                        .collect();
                                    // SAFETY: `is_supported` checked every feature the kernel
                                    // needs; the shapes are the kernel's preconditions. The
                                    // chunk starts 64 bytes into each output.
                                    unsafe {
                                        split_chunk(
                                            Keystream {
                                                key: &key,
                                                counter,
                                                next_key: &mut next,
                                            },
                                            &secret,
                                            64,
                                            &mut outs,
                                            &xs,
                                            degree,
                                            stream,
                                        );
                                    }
                                }
                                assert_eq!(
                                    next.as_slice(),
                                    &ks[degree * len..],
                                    "next key: degree {degree} len {len} counter {counter:#x}"
                                );
                                for (r, (b, &skip)) in backing.iter().zip(&skips).enumerate() {
                                    let what = format!(
                                        "degree {degree} len {len} counter {counter:#x} share {r}/{count} \
                                         offsets {offsets:?} stream {stream}"
                                    );
                                    assert_eq!(
                                        &b[skip..skip + len],
                                        expected[r].as_slice(),
                                        "{what}"
                                    );
                                    assert!(
                                        b[..skip].iter().all(|&g| g == 0xA5),
                                        "{what}: guard before"
                                    );
                                    assert!(
                                        b[skip + len..].iter().all(|&g| g == 0xA5),
                                        "{what}: guard after"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// One block through the 512-bit rounds (in lane 0 of a vector).
    #[target_feature(enable = "avx512f,avx512bw,vaes,aes")]
    fn encrypt_one(keys: &RoundKeys, plain: [u8; 16]) -> [u8; 16] {
        let mut cipher = Cipher {
            rk: [_mm512_setzero_si512(); ROUND_KEYS],
            hi: 0,
            lo: 0,
        };
        for (i, slot) in cipher.rk.iter_mut().enumerate() {
            *slot = keys.broadcast(i);
        }
        let mut state = [_mm512_broadcast_i32x4(load128(&plain))];
        cipher.encrypt(&mut state);
        let mut out = [0u8; 64];
        store_columns::<1>(&mut out, 0, Lanes::All, &state);
        let mut block = [0u8; 16];
        block.copy_from_slice(&out[..16]);
        block
    }
}
