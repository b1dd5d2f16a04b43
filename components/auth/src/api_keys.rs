//! API keys, stored as their SHA-256 (never the key): several per login user so keys rotate,
//! each with its backend role, an expiry, and a statement rate the rate limiter reads.
//! Config entries are `sha256hex:user:role:expires_unix:rate` (`role` empty: the login user's
//! own; `expires_unix` 0: never; `rate` 0: no limit of its own).

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Lower-case hex SHA-256 of the key.
    pub hash: String,
    /// The login user it belongs to.
    pub user: String,
    /// Backend role, when it maps to one.
    pub role: Option<String>,
    /// Unix seconds after which it is refused (0: never).
    pub expires_s: i64,
    /// Statements per second (0: none of its own).
    pub rate: u64,
}

/// Parses config entries.
pub fn parse(entries: &[String]) -> Result<Vec<ApiKey>, String> {
    entries
        .iter()
        .map(|e| {
            let f: Vec<&str> = e.split(':').collect();
            let [hash, user, role, expires, rate] = f.as_slice() else {
                return Err(format!(
                    "api_keys: {e:?} is not hash:user:role:expires:rate"
                ));
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("api_keys: {hash:?} is not a hex SHA-256"));
            }
            Ok(ApiKey {
                hash: hash.to_ascii_lowercase(),
                user: (*user).to_owned(),
                role: (!role.is_empty()).then(|| (*role).to_owned()),
                expires_s: expires
                    .parse()
                    .map_err(|_| format!("api_keys: expiry {expires:?}"))?,
                rate: rate
                    .parse()
                    .map_err(|_| format!("api_keys: rate {rate:?}"))?,
            })
        })
        .collect()
}

/// The key of `user` whose hash is `hash`, when it has not expired at `now_s`.
pub fn find<'a>(
    keys: &'a [ApiKey],
    user: &str,
    hash: &str,
    now_s: i64,
) -> Result<&'a ApiKey, String> {
    let key = keys
        .iter()
        .find(|k| k.user == user && constant_time_eq(k.hash.as_bytes(), hash.as_bytes()))
        .ok_or("no such API key for this user")?;
    if key.expires_s != 0 && now_s > key.expires_s {
        return Err(format!("API key expired at {}", key.expires_s));
    }
    Ok(key)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}
