//! Host capabilities. In a component (wasm32) these call the kernel; on a native target they
//! use the fake host in [`crate::testing`], so component logic runs under `cargo test`.

/// A backend node as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Name.
    pub name: String,
    /// "primary" or "replica".
    pub role: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Accepting connections.
    pub healthy: bool,
    /// Replay lag behind the primary in bytes, when known.
    pub lag_bytes: Option<u64>,
}

/// A key [`verify_signature`] checks with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyingKey {
    /// RSA modulus and public exponent, big-endian (a JWK's `n` and `e`).
    Rsa(Vec<u8>, Vec<u8>),
    /// An uncompressed EC point (`0x04 || x || y`), or an Ed25519 public key (32 bytes).
    Point(Vec<u8>),
    /// An HMAC secret.
    Secret(Vec<u8>),
}

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Level, Node, VerifyingKey};
    use crate::bindings::helios::plugin::{clock, crypto, documents, kv, log, topology};

    pub fn document(name: &str) -> Option<Vec<u8>> {
        documents::get(name)
    }
    pub fn refresh_document(name: &str) {
        documents::refresh(name)
    }

    pub fn verify_signature(alg: &str, key: &VerifyingKey, message: &[u8], sig: &[u8]) -> bool {
        let key = match key {
            VerifyingKey::Rsa(n, e) => crypto::VerifyingKey::Rsa((n.clone(), e.clone())),
            VerifyingKey::Point(p) => crypto::VerifyingKey::Point(p.clone()),
            VerifyingKey::Secret(s) => crypto::VerifyingKey::Secret(s.clone()),
        };
        crypto::verify_signature(alg, &key, message, sig)
    }

    pub fn nodes() -> Vec<Node> {
        topology::nodes()
            .into_iter()
            .map(|n| Node {
                name: n.name,
                role: n.role,
                tags: n.tags,
                healthy: n.healthy,
                lag_bytes: n.lag_bytes,
            })
            .collect()
    }
    pub fn kv_get(key: &str) -> Option<Vec<u8>> {
        kv::get(key)
    }
    pub fn kv_set(key: &str, value: &[u8], ttl_ms: Option<u64>) {
        kv::set(key, value, ttl_ms)
    }
    pub fn kv_delete(key: &str) {
        kv::delete(key)
    }
    pub fn kv_incr(key: &str, delta: i64, ttl_ms: Option<u64>) -> i64 {
        kv::incr(key, delta, ttl_ms)
    }
    pub fn sha256_hex(data: &[u8]) -> String {
        crypto::sha256_hex(data)
    }
    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error => log::Level::Error,
        };
        log::write(level, message)
    }
    pub fn now_ms() -> u64 {
        clock::now_ms()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Level, Node, VerifyingKey};
    use crate::testing::with_fake;

    pub fn document(name: &str) -> Option<Vec<u8>> {
        with_fake(|f| f.documents.get(name).cloned())
    }
    pub fn refresh_document(name: &str) {
        with_fake(|f| f.refreshed.push(name.to_owned()))
    }

    /// The kernel's own algorithm table, on `ring` like the kernel: unit tests verify real
    /// signatures.
    pub fn verify_signature(alg: &str, key: &VerifyingKey, message: &[u8], sig: &[u8]) -> bool {
        use ring::{hmac, signature};
        match key {
            VerifyingKey::Rsa(n, e) => {
                let params: &signature::RsaParameters = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                    "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                    "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                    "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            VerifyingKey::Point(p) => {
                let params: &dyn signature::VerificationAlgorithm = match alg {
                    "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
                    "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
                    "EdDSA" => &signature::ED25519,
                    _ => return false,
                };
                signature::UnparsedPublicKey::new(params, p)
                    .verify(message, sig)
                    .is_ok()
            }
            VerifyingKey::Secret(s) => {
                let algorithm = match alg {
                    "HS256" => hmac::HMAC_SHA256,
                    "HS384" => hmac::HMAC_SHA384,
                    "HS512" => hmac::HMAC_SHA512,
                    _ => return false,
                };
                !s.is_empty() && hmac::verify(&hmac::Key::new(algorithm, s), message, sig).is_ok()
            }
        }
    }

    pub fn nodes() -> Vec<Node> {
        with_fake(|f| f.nodes.clone())
    }
    pub fn kv_get(key: &str) -> Option<Vec<u8>> {
        with_fake(|f| f.kv.get(key).cloned())
    }
    pub fn kv_set(key: &str, value: &[u8], _ttl_ms: Option<u64>) {
        with_fake(|f| {
            f.kv.insert(key.to_owned(), value.to_vec());
        })
    }
    pub fn kv_delete(key: &str) {
        with_fake(|f| {
            f.kv.remove(key);
        })
    }
    pub fn kv_incr(key: &str, delta: i64, _ttl_ms: Option<u64>) -> i64 {
        with_fake(|f| {
            let cur =
                f.kv.get(key)
                    .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                    .map(i64::from_le_bytes)
                    .unwrap_or(0);
            let next = cur + delta;
            f.kv.insert(key.to_owned(), next.to_le_bytes().to_vec());
            next
        })
    }
    pub fn sha256_hex(data: &[u8]) -> String {
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
    pub fn log(level: Level, message: &str) {
        with_fake(|f| f.logs.push((level, message.to_owned())))
    }
    pub fn now_ms() -> u64 {
        with_fake(|f| f.now_ms)
    }
}

/// Every configured node (requires the `topology` grant).
pub fn nodes() -> Vec<Node> {
    imp::nodes()
}

/// The value under `key` in this component's store (requires `kv`).
pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    imp::kv_get(key)
}

/// Stores a value, expiring after `ttl_ms` when given (requires `kv`).
pub fn kv_set(key: &str, value: &[u8], ttl_ms: Option<u64>) {
    imp::kv_set(key, value, ttl_ms)
}

/// Removes a key (requires `kv`).
pub fn kv_delete(key: &str) {
    imp::kv_delete(key)
}

/// Atomically adds to an integer counter (requires `kv`).
pub fn kv_incr(key: &str, delta: i64, ttl_ms: Option<u64>) -> i64 {
    imp::kv_incr(key, delta, ttl_ms)
}

/// Hex SHA-256 (requires `crypto`).
pub fn sha256_hex(data: &[u8]) -> String {
    imp::sha256_hex(data)
}

/// Whether `signature` over `message` verifies under `key` with the JOSE algorithm
/// `algorithm` (RS/PS 256/384/512, ES256, ES384, EdDSA, HS 256/384/512), checked by the
/// kernel (requires `crypto`). A key of the wrong kind for the algorithm never verifies.
pub fn verify_signature(
    algorithm: &str,
    key: &VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> bool {
    imp::verify_signature(algorithm, key, message, signature)
}

/// The current contents of the document `name` its `[[plugins]]` entry names (`documents =
/// { name = "path" }`), read by the kernel and read again when the file changes; `None` when
/// there is no such document. No grant needed.
pub fn document(name: &str) -> Option<Vec<u8>> {
    imp::document(name)
}

/// Asks the kernel to fetch the URL document `name` again now (at most once per 5 s); a
/// later [`document`] sees the new copy. For a key id the current key set lacks.
pub fn refresh_document(name: &str) {
    imp::refresh_document(name)
}

/// Writes a log line attributed to the component (requires `log`).
pub fn log(level: Level, message: &str) {
    imp::log(level, message)
}

/// Milliseconds since the Unix epoch (requires `clock`).
pub fn now_ms() -> u64 {
    imp::now_ms()
}
