//! The compiled-component cache: the native code wasmtime made from a verified component,
//! kept so a restart need not compile it again. Native code runs unchecked, so the cache
//! must never become a way to run code nobody verified:
//! - the directory is private: created 0700, refused when it is a symlink, belongs to
//!   someone else, or others may write to it;
//! - an entry is named by the verified wasm's digest and bound to it (and to its own bytes)
//!   by an HMAC under a key kept in the directory (0600), so native code copied from another
//!   component, or altered, does not verify and is compiled afresh;
//! - entries are written to a new temporary file (exclusive creation, no symlinks followed,
//!   0600) and renamed into place; only regular files owned by the proxy's user are read.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A verified, private cache directory.
pub struct CompiledCache {
    dir: PathBuf,
    key: [u8; 32],
}

/// Name of the key file.
const KEY_FILE: &str = "cache.key";

impl CompiledCache {
    /// Opens (creating when needed) the cache in `dir`; an error says why it is not used.
    pub fn open(dir: &Path) -> Result<Self, String> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let meta = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!(
                "{} is not a directory (or is a symlink)",
                dir.display()
            ));
        }
        if meta.uid() != effective_uid() {
            return Err(format!("{} belongs to another user", dir.display()));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
        }
        let key = load_or_create_key(&dir.join(KEY_FILE))?;
        Ok(CompiledCache {
            dir: dir.to_owned(),
            key,
        })
    }

    /// The compiled bytes for the verified component with `digest`, when an entry exists
    /// and verifies.
    pub fn load(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.entry(digest);
        let bytes = read_private(&path)?;
        let mac = read_private(&path.with_extension("mac"))?;
        let expected = hex::decode(String::from_utf8_lossy(&mac).trim()).ok()?;
        if self.mac(digest, &bytes).verify_slice(&expected).is_err() {
            tracing::warn!(
                entry = %path.display(),
                "compiled component does not match its verified digest; compiling afresh"
            );
            return None;
        }
        Some(bytes)
    }

    /// Stores the compiled bytes for the verified component with `digest`.
    pub fn store(&self, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.entry(digest);
        let mac = hex::encode(self.mac(digest, bytes).finalize().into_bytes());
        write_new(&path.with_extension("mac"), mac.as_bytes())?;
        write_new(&path, bytes)
    }

    fn entry(&self, digest: &str) -> PathBuf {
        // The digest is hex from our own hashing; anything else never names a file.
        let safe: String = digest
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(64)
            .collect();
        self.dir.join(format!("{safe}.cwasm"))
    }

    fn mac(&self, digest: &str, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"heliosproxy compiled component\0");
        mac.update(digest.as_bytes());
        mac.update(&[0]);
        mac.update(&Sha256::digest(bytes));
        mac
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Reads a file only when it is a regular file (not a symlink) owned by us and not
/// writable by others.
fn read_private(path: &Path) -> Option<Vec<u8>> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.uid() != effective_uid() || meta.mode() & 0o022 != 0 {
        if meta.is_file() || meta.file_type().is_symlink() {
            tracing::warn!(entry = %path.display(), "ignoring a cache entry that is not private");
        }
        return None;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let mut out = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut out).ok()?;
    Some(out)
}

/// Writes `bytes` to a new temporary file beside `path` and renames it into place.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{:016x}", rand::rng().next_u64()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn load_or_create_key(path: &Path) -> Result<[u8; 32], String> {
    if let Some(bytes) = read_private(path) {
        return bytes
            .try_into()
            .map_err(|_| format!("{} is not a cache key", path.display()));
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let _ = fs::remove_file(path);
    write_new(path, &key).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(label: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "helios-cache-{label}-{}-{}",
            std::process::id(),
            rand::rng().next_u64()
        ))
    }

    #[test]
    fn entries_verify_only_for_their_own_digest_and_bytes() {
        let dir = temp("entries");
        let cache = CompiledCache::open(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        cache.store(&a, b"native code of a").unwrap();
        cache.store(&b, b"native code of b").unwrap();
        assert_eq!(cache.load(&a).as_deref(), Some(&b"native code of a"[..]));
        // B's native code copied over A's entry: refused.
        fs::copy(
            dir.join(format!("{b}.cwasm")),
            dir.join(format!("{a}.cwasm")),
        )
        .unwrap();
        assert_eq!(cache.load(&a), None);
        // A's entry replaced by a symlink to B's (and its mac): refused.
        cache.store(&a, b"native code of a").unwrap();
        fs::remove_file(dir.join(format!("{a}.cwasm"))).unwrap();
        std::os::unix::fs::symlink(
            dir.join(format!("{b}.cwasm")),
            dir.join(format!("{a}.cwasm")),
        )
        .unwrap();
        assert_eq!(cache.load(&a), None);
        // Reopened, the key is the same: entries survive a restart.
        let again = CompiledCache::open(&dir).unwrap();
        assert_eq!(again.load(&b).as_deref(), Some(&b"native code of b"[..]));
    }

    #[test]
    fn a_directory_others_can_use_is_refused_or_made_private() {
        let dir = temp("shared");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        CompiledCache::open(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let link = temp("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(CompiledCache::open(&link).is_err(), "a symlinked directory");
    }
}
