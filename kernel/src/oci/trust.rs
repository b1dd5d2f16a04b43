//! The trust root: a directory of `*.pub` Ed25519 public keys in the formats people already
//! have — PEM as `openssl genpkey -algorithm ed25519` / `openssl pkey -pubout` write it,
//! minisign/signify-style (an `untrusted comment:` line, then base64 of `Ed` + key id + key),
//! or the raw 32-byte key in base64 — and signature checks against it.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Why keys could not be read or a signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The directory or a key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file is in no known format.
    #[error("{path}: not an Ed25519 public key (PEM, minisign/signify or raw base64)")]
    BadKey {
        /// Path.
        path: PathBuf,
    },
    /// The directory has no keys.
    #[error("trust root {0} holds no *.pub keys")]
    Empty(PathBuf),
    /// The artefact carries no signature.
    #[error("component is not signed, and a trust root is configured")]
    Unsigned,
    /// No trusted key verifies the signature.
    #[error("signature does not verify against any key in the trust root")]
    Untrusted,
    /// A private key file is unusable.
    #[error("{path}: not an Ed25519 private key (PKCS#8 PEM): {why}")]
    BadPrivateKey {
        /// Path.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Trusted public keys, each with the file it came from.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    dir: PathBuf,
    keys: Vec<(String, VerifyingKey)>,
}

impl TrustRoot {
    /// Loads every `*.pub` file in `dir`; any unreadable or malformed key is an error (a
    /// typo in a trust root must not silently shrink it).
    pub fn load(dir: &Path) -> Result<TrustRoot, TrustError> {
        let read_err = |path: &Path, source| TrustError::Read {
            path: path.to_owned(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| read_err(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        files.sort();
        let mut keys = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
            let key =
                parse_public_key(&text).ok_or_else(|| TrustError::BadKey { path: path.clone() })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            keys.push((name, key));
        }
        if keys.is_empty() {
            return Err(TrustError::Empty(dir.to_owned()));
        }
        Ok(TrustRoot {
            dir: dir.to_owned(),
            keys,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks `signature` over `data`; returns the name of the key file that verified it.
    pub fn verify(&self, data: &[u8], signature: Option<&[u8; 64]>) -> Result<&str, TrustError> {
        let sig = Signature::from_bytes(signature.ok_or(TrustError::Unsigned)?);
        self.keys
            .iter()
            .find(|(_, k)| k.verify(data, &sig).is_ok())
            .map(|(name, _)| name.as_str())
            .ok_or(TrustError::Untrusted)
    }
}

/// Parses a public key in PEM, minisign/signify or raw base64 form.
pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    let text = text.trim();
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        return VerifyingKey::from_public_key_pem(text).ok();
    }
    let b64_line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))?;
    let raw = B64.decode(b64_line).ok()?;
    let key: [u8; 32] = match raw.len() {
        32 => raw.try_into().ok()?,
        // minisign / signify: "Ed" + 8-byte key id + 32-byte key
        42 if &raw[..2] == b"Ed" => raw[10..].try_into().ok()?,
        _ => return None,
    };
    VerifyingKey::from_bytes(&key).ok()
}

/// Parses a detached signature: 64 raw bytes (`openssl pkeyutl -sign -rawin`), signify's
/// `.sig` (an `untrusted comment:` line, then base64 of `Ed` + key id + signature), or the
/// 64 bytes in base64.
pub fn parse_signature(bytes: &[u8]) -> Option<[u8; 64]> {
    if let Ok(raw) = <[u8; 64]>::try_from(bytes) {
        return Some(raw);
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))?;
    let raw = B64.decode(line).ok()?;
    match raw.len() {
        64 => raw.try_into().ok(),
        // signify: "Ed" + 8-byte key id + 64-byte signature
        74 if &raw[..2] == b"Ed" => raw[10..].try_into().ok(),
        _ => None,
    }
}

/// A new key pair as (private PKCS#8 PEM, public SPKI PEM).
pub fn generate_key_pair() -> (String, String) {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(Default::default())
        .expect("an Ed25519 key encodes")
        .to_string();
    let public = key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .expect("an Ed25519 key encodes");
    (private, public)
}

/// Reads a PKCS#8 PEM private key (as `helios-plugin keygen` or `openssl genpkey` write it).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, TrustError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrustError::Read {
        path: path.to_owned(),
        source,
    })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| TrustError::BadPrivateKey {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

/// Writes a secret (private key, API key) readable by its owner only (mode 0600); refuses to
/// overwrite an existing file.
pub fn write_private_key(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Signs `data`.
pub fn sign(key: &SigningKey, data: &[u8]) -> [u8; 64] {
    key.sign(data).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_in_every_public_format() {
        let (private, public_pem) = generate_key_pair();
        let key = SigningKey::from_pkcs8_pem(&private).unwrap();
        let raw = B64.encode(key.verifying_key().to_bytes());
        let mut minisign = b"Ed".to_vec();
        minisign.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        minisign.extend_from_slice(&key.verifying_key().to_bytes());
        let minisign = format!(
            "untrusted comment: minisign public key\n{}\n",
            B64.encode(minisign)
        );
        for text in [public_pem.as_str(), raw.as_str(), minisign.as_str()] {
            assert_eq!(parse_public_key(text), Some(key.verifying_key()), "{text}");
        }
        let dir = std::env::temp_dir().join(format!("helios-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.pub"), &public_pem).unwrap();
        let root = TrustRoot::load(&dir).unwrap();
        let sig = sign(&key, b"wasm bytes");
        assert_eq!(root.verify(b"wasm bytes", Some(&sig)).unwrap(), "a.pub");
        assert!(matches!(
            root.verify(b"tampered", Some(&sig)),
            Err(TrustError::Untrusted)
        ));
        assert!(matches!(
            root.verify(b"wasm bytes", None),
            Err(TrustError::Unsigned)
        ));
        let (other, _) = generate_key_pair();
        let other = SigningKey::from_pkcs8_pem(&other).unwrap();
        assert!(matches!(
            root.verify(b"wasm bytes", Some(&sign(&other, b"wasm bytes"))),
            Err(TrustError::Untrusted)
        ));
        std::fs::write(dir.join("typo.pub"), "not a key").unwrap();
        assert!(matches!(
            TrustRoot::load(&dir),
            Err(TrustError::BadKey { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn openssl_written_pem_is_accepted() {
        // `openssl genpkey -algorithm ed25519 | openssl pkey -pubout`
        let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert!(parse_public_key(pem).is_some());
    }
}
