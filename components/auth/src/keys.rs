//! The verification keys of a JWKS document: each with its `kid` and the one algorithm it
//! may be used with (`alg` is required: a key never verifies under an algorithm it was not
//! published for, which rules out `none` and HS/RS confusion).

use helios_sdk::host::VerifyingKey;
use serde_json::Value;

use crate::b64;

/// One key.
#[derive(Debug, Clone)]
pub struct Jwk {
    /// Key id, when published.
    pub kid: Option<String>,
    /// The algorithm it is pinned to.
    pub alg: String,
    /// The key material.
    pub key: VerifyingKey,
}

fn field<'a>(jwk: &'a Value, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("a key has no {name:?}"))
}

fn bytes(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    b64::decode(field(jwk, name)?).ok_or_else(|| format!("a key's {name:?} is not base64url"))
}

/// The keys of a JWKS document (`{"keys": [...]}`).
pub fn parse(jwks: &str) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_str(jwks).map_err(|e| format!("jwks: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("jwks: no \"keys\" array")?;
    keys.iter().map(one).collect()
}

fn one(jwk: &Value) -> Result<Jwk, String> {
    let alg = field(jwk, "alg")?.to_owned();
    let kty = field(jwk, "kty")?;
    let key = match (kty, alg.as_str()) {
        ("RSA", "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512") => {
            VerifyingKey::Rsa(bytes(jwk, "n")?, bytes(jwk, "e")?)
        }
        ("EC", "ES256" | "ES384") => {
            let want = if alg == "ES256" { "P-256" } else { "P-384" };
            if field(jwk, "crv")? != want {
                return Err(format!("an {alg} key must be on {want}"));
            }
            let mut point = vec![4u8];
            point.extend(bytes(jwk, "x")?);
            point.extend(bytes(jwk, "y")?);
            VerifyingKey::Point(point)
        }
        ("OKP", "EdDSA") => {
            if field(jwk, "crv")? != "Ed25519" {
                return Err("an EdDSA key must be Ed25519".into());
            }
            VerifyingKey::Point(bytes(jwk, "x")?)
        }
        ("oct", "HS256" | "HS384" | "HS512") => {
            let k = bytes(jwk, "k")?;
            if k.len() < 32 {
                return Err("an HMAC key must be at least 32 bytes".into());
            }
            VerifyingKey::Secret(k)
        }
        _ => return Err(format!("a {kty} key cannot be used for {alg}")),
    };
    Ok(Jwk {
        kid: jwk.get("kid").and_then(Value::as_str).map(str::to_owned),
        alg,
        key,
    })
}

/// The key a token with header `kid`/`alg` names: by `kid` when the token has one, else the
/// only key pinned to `alg`; never a key pinned to another algorithm.
pub fn find<'a>(keys: &'a [Jwk], kid: Option<&str>, alg: &str) -> Option<&'a Jwk> {
    let mut pinned = keys.iter().filter(|k| k.alg == alg);
    match kid {
        Some(kid) => pinned.find(|k| k.kid.as_deref() == Some(kid)),
        None => {
            let first = pinned.next()?;
            pinned.next().is_none().then_some(first)
        }
    }
}
