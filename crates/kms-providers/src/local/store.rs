//! The key directory: one immutable file per KEK version, private permissions, atomic creation.
//!
//! Layout: `<key_dir>/<key_name>/v<version, 10 digits>.kek`, directories `0700`, files `0600`,
//! all owned by the user the process runs as. A version file is written once (temporary file,
//! `fsync`, `link(2)` to its final name, `fsync` of the directory) and never modified, so a crash
//! leaves either no version or a complete one, and two processes creating the same version at
//! once cannot overwrite each other: `link` fails for the second, which then reads the first's.
//!
//! File format (big-endian): magic `MVLOCKEK`, format byte `1`, `u32` version, `u8` key-name
//! length and the key name, the 32-byte key, and a 16-byte key check value (the AES-256-GCM tag
//! of an empty message under the key, zero nonce, associated data naming the file's key and
//! version). The check value catches a corrupted or swapped file at start-up instead of at the
//! first unwrap.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::Kek;
use crate::error::Error;

const MAGIC: &[u8; 8] = b"MVLOCKEK";
const FILE_FORMAT: u8 = 1;
const KEY_LEN: usize = 32;
const KCV_LEN: usize = 16;
/// Bigger than any valid file (name at most 64 bytes); bounds what we read from disk.
const MAX_FILE_LEN: u64 = 256;
const KCV_DOMAIN: &[u8] = b"mpc-vault/kms-providers/local-kek-check/v1";

/// Result of trying to create a version file.
pub(super) enum Created {
    /// Our file is now that version.
    Ours,
    /// Another writer created that version first; ours was discarded.
    LostRace,
}

/// The file name of a version: fixed width, so names sort like numbers.
fn file_name(version: u32) -> String {
    format!("v{version:010}.kek")
}

/// The version a file name encodes, if it is exactly a version file name.
fn parse_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('v')?.strip_suffix(".kek")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u32 = digits.parse().ok()?;
    (v >= 1).then_some(v)
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn insecure(provider: &str, path: &Path, problem: String, fix: String) -> Error {
    Error::InsecureKeyStorage {
        provider: provider.to_owned(),
        path: path.to_owned(),
        problem,
        fix,
    }
}

/// Maps an I/O failure on key storage to the error class an operator can act on.
fn io_error(provider: &str, what: &str, path: &Path, err: io::Error) -> Error {
    let reason = format!("{what} {}", path.display());
    match err.kind() {
        io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            provider: provider.to_owned(),
            reason,
            source: Some(Box::new(err)),
        },
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Error::Misconfigured {
            provider: provider.to_owned(),
            reason,
            source: Some(Box::new(err)),
        },
        _ => Error::Unavailable {
            provider: provider.to_owned(),
            reason,
            source: Some(Box::new(err)),
        },
    }
}

/// How private a directory must be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum DirRule {
    /// The configured key directory, which holds one subdirectory per key: like ssh's rule for
    /// the directories above a key, it must not be writable by group or others (who could
    /// rename or replace what is inside) and must belong to us or to root. Reading its listing
    /// only reveals key names.
    Root,
    /// A key's own directory, which holds the key files: ours alone (`0700`).
    Key,
}

/// Refuses a directory that is a symlink, not a directory, owned by another user, or too open
/// for its [`DirRule`]. Because every key directory is private to us, nobody else can swap
/// files in it between these checks and our reads (no TOCTOU window for other users).
fn check_dir(provider: &str, path: &Path, rule: DirRule) -> Result<(), Error> {
    let meta = fs::symlink_metadata(path)
        .map_err(|e| io_error(provider, "cannot inspect key directory", path, e))?;
    if meta.file_type().is_symlink() {
        return Err(insecure(
            provider,
            path,
            "the key directory is a symbolic link".into(),
            "configure the real directory path".into(),
        ));
    }
    if !meta.is_dir() {
        return Err(insecure(
            provider,
            path,
            "not a directory".into(),
            "point the key directory at a directory".into(),
        ));
    }
    let me = euid();
    let owner_ok = meta.uid() == me || (rule == DirRule::Root && meta.uid() == 0);
    if !owner_ok {
        return Err(insecure(
            provider,
            path,
            format!(
                "owned by uid {}, not by this process's user (uid {me})",
                meta.uid()
            ),
            format!(
                "chown {me} {}, or run the server as its owner",
                path.display()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    match rule {
        DirRule::Root if mode & 0o022 != 0 => Err(insecure(
            provider,
            path,
            format!("mode {mode:04o} lets group or others write to the key directory"),
            format!("chmod go-w {}", path.display()),
        )),
        DirRule::Key if mode & 0o077 != 0 => Err(insecure(
            provider,
            path,
            format!("mode {mode:04o} gives group or others access to the key's directory"),
            format!("chmod 700 {}", path.display()),
        )),
        DirRule::Root | DirRule::Key => Ok(()),
    }
}

/// Refuses a key file that is a symlink, not a regular file, owned by another user, or
/// readable or writable by group or others (ssh's rule for private keys).
fn check_private_file(provider: &str, path: &Path, meta: &fs::Metadata) -> Result<(), Error> {
    if meta.file_type().is_symlink() {
        return Err(insecure(
            provider,
            path,
            "the key file is a symbolic link".into(),
            "replace the link by the file itself".into(),
        ));
    }
    if !meta.is_file() {
        return Err(insecure(
            provider,
            path,
            "not a regular file".into(),
            "remove it from the key directory".into(),
        ));
    }
    let me = euid();
    if meta.uid() != me {
        return Err(insecure(
            provider,
            path,
            format!(
                "owned by uid {}, not by this process's user (uid {me})",
                meta.uid()
            ),
            format!("chown {me} {}", path.display()),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(insecure(
            provider,
            path,
            format!("mode {mode:04o} lets group or others read or write the key file"),
            format!("chmod 600 {}", path.display()),
        ));
    }
    Ok(())
}

/// Creates `path` (and missing parents) as `0700` if absent, then checks it against `rule`.
pub(super) fn ensure_dir(
    provider: &str,
    path: &Path,
    rule: DirRule,
    create: bool,
) -> Result<(), Error> {
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| io_error(provider, "cannot create key directory", path, e))?;
        }
        Err(e) => return Err(io_error(provider, "cannot open key directory", path, e)),
    }
    check_dir(provider, path, rule)
}

/// The key check value of a key: binds the key to the name and version in its file.
fn key_check_value(
    provider: &str,
    key: &[u8; KEY_LEN],
    key_name: &str,
    version: u32,
) -> Result<[u8; KCV_LEN], Error> {
    let cipher = Aes256Gcm::new(key.into());
    let mut aad = Vec::with_capacity(KCV_DOMAIN.len() + key_name.len() + 8);
    crate::context::put_lv(&mut aad, KCV_DOMAIN);
    crate::context::put_lv(&mut aad, key_name.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    let nonce = aes_gcm::Nonce::default();
    let tag = cipher
        .encrypt_inout_detached(&nonce, &aad, (&mut [][..]).into())
        .map_err(|_| Error::internal(provider, "AES-GCM refused an empty message", None))?;
    let mut out = [0u8; KCV_LEN];
    out.copy_from_slice(tag.as_slice());
    Ok(out)
}

fn encode_file(
    provider: &str,
    key_name: &str,
    version: u32,
    key: &[u8; KEY_LEN],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let name_len = u8::try_from(key_name.len())
        .map_err(|_| Error::internal(provider, "key name longer than 255 bytes", None))?;
    let kcv = key_check_value(provider, key, key_name, version)?;
    let mut out = Zeroizing::new(Vec::with_capacity(
        8 + 1 + 4 + 1 + key_name.len() + KEY_LEN + KCV_LEN,
    ));
    out.extend_from_slice(MAGIC);
    out.push(FILE_FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.push(name_len);
    out.extend_from_slice(key_name.as_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&kcv);
    Ok(out)
}

/// Parses and checks a key file; every failure names the file.
fn decode_file(
    provider: &str,
    path: &Path,
    bytes: &[u8],
    key_name: &str,
    version: u32,
) -> Result<Kek, Error> {
    let corrupt = |what: &str| {
        Error::misconfigured(
            provider,
            format!(
                "key file {} is corrupt or not a key file ({what}); restore it from backup",
                path.display()
            ),
        )
    };
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| corrupt("bad magic"))?;
    let (&format, rest) = rest.split_first().ok_or_else(|| corrupt("truncated"))?;
    if format != FILE_FORMAT {
        return Err(corrupt("unknown format version"));
    }
    let (v, rest) = rest
        .split_at_checked(4)
        .ok_or_else(|| corrupt("truncated"))?;
    let v = u32::from_be_bytes(v.try_into().map_err(|_| corrupt("truncated"))?);
    let (&name_len, rest) = rest.split_first().ok_or_else(|| corrupt("truncated"))?;
    let (name, rest) = rest
        .split_at_checked(usize::from(name_len))
        .ok_or_else(|| corrupt("truncated"))?;
    let (key, kcv) = rest
        .split_at_checked(KEY_LEN)
        .ok_or_else(|| corrupt("truncated"))?;
    if kcv.len() != KCV_LEN {
        return Err(corrupt("wrong length"));
    }
    if v != version || name != key_name.as_bytes() {
        return Err(corrupt("it belongs to another key or version"));
    }
    let mut key_arr = Zeroizing::new([0u8; KEY_LEN]);
    key_arr.copy_from_slice(key);
    let expected = key_check_value(provider, &key_arr, key_name, version)?;
    if !bool::from(expected.as_slice().ct_eq(kcv)) {
        return Err(corrupt("key check value mismatch"));
    }
    Ok(Kek::new(version, &key_arr))
}

/// Loads every version file of the key in `dir` (the key's own directory), checking
/// permissions of the directory and of each file.
pub(super) fn load_versions(
    provider: &str,
    dir: &Path,
    key_name: &str,
) -> Result<BTreeMap<u32, Arc<Kek>>, Error> {
    check_dir(provider, dir, DirRule::Key)?;
    let mut out = BTreeMap::new();
    let entries =
        fs::read_dir(dir).map_err(|e| io_error(provider, "cannot list key directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(provider, "cannot list key directory", dir, e))?;
        let name = entry.file_name();
        // Temporary files (dot-prefixed) and anything that is not a version file are not keys.
        let Some(version) = name.to_str().and_then(parse_file_name) else {
            continue;
        };
        let path = entry.path();
        let kek = read_version(provider, &path, key_name, version)?;
        out.insert(version, Arc::new(kek));
    }
    Ok(out)
}

fn read_version(provider: &str, path: &Path, key_name: &str, version: u32) -> Result<Kek, Error> {
    let meta = fs::symlink_metadata(path)
        .map_err(|e| io_error(provider, "cannot inspect key file", path, e))?;
    check_private_file(provider, path, &meta)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .open(path)
        .map_err(|e| io_error(provider, "cannot open key file", path, e))?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(128));
    file.take(MAX_FILE_LEN)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(provider, "cannot read key file", path, e))?;
    decode_file(provider, path, &bytes, key_name, version)
}

/// Creates version `version` of the key with a fresh random KEK, atomically.
pub(super) fn create_version(
    provider: &str,
    dir: &Path,
    key_name: &str,
    version: u32,
) -> Result<Created, Error> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(key.as_mut_slice()).map_err(|e| Error::rng(provider, e))?;
    let content = encode_file(provider, key_name, version, &key)?;
    let suffix = getrandom::u64().map_err(|e| Error::rng(provider, e))?;
    let final_path = dir.join(file_name(version));
    let tmp_path: PathBuf = dir.join(format!(".{}.tmp-{suffix:016x}", file_name(version)));

    let written = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
            .open(&tmp_path)?;
        f.write_all(&content)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp_path);
        return Err(io_error(provider, "cannot write key file", &tmp_path, e));
    }
    // link(2) never replaces an existing name: exactly one writer wins each version.
    let linked = fs::hard_link(&tmp_path, &final_path);
    // The temporary name is removed in every case; failing to remove it leaves an unused,
    // private file behind, which is harmless, so that error is not worth failing the call for.
    let _ = fs::remove_file(&tmp_path);
    let outcome = match linked {
        Ok(()) => Created::Ours,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Created::LostRace,
        Err(e) => return Err(io_error(provider, "cannot create key file", &final_path, e)),
    };
    // Persist the directory entries so that the new version survives a crash.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(provider, "cannot sync key directory", dir, e))?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(file_name(1), "v0000000001.kek");
        assert_eq!(parse_file_name("v0000000001.kek"), Some(1));
        assert_eq!(parse_file_name(&file_name(u32::MAX)), Some(u32::MAX));
        assert_eq!(parse_file_name("v0000000000.kek"), None);
        assert_eq!(parse_file_name("v1.kek"), None);
        assert_eq!(parse_file_name(".v0000000001.kek.tmp-00"), None);
        assert_eq!(parse_file_name("v000000000a.kek"), None);
    }

    #[test]
    fn file_round_trip_and_corruption() {
        let key = [7u8; KEY_LEN];
        let bytes = encode_file("p", "gcp", 3, &key).unwrap();
        let path = Path::new("/k/v0000000003.kek");
        assert!(decode_file("p", path, &bytes, "gcp", 3).is_ok());
        // Another name or version than the file's own is refused.
        assert!(decode_file("p", path, &bytes, "aws", 3).is_err());
        assert!(decode_file("p", path, &bytes, "gcp", 4).is_err());
        // Every single-bit flip and every truncation is caught.
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.to_vec();
                b[i] ^= 1 << bit;
                assert!(
                    decode_file("p", path, &b, "gcp", 3).is_err(),
                    "byte {i} bit {bit}"
                );
            }
            assert!(decode_file("p", path, &bytes[..i], "gcp", 3).is_err());
        }
        let err = decode_file("p", path, b"garbage", "gcp", 3).unwrap_err();
        assert!(err.to_string().contains("/k/v0000000003.kek"), "{err}");
    }
}
