//! JSON Web Tokens (RFC 7519, compact JWS): the signature checked by the kernel under the
//! key the header names and that key's pinned algorithm, then the claims: `exp` (required),
//! `nbf` and `iat` with a leeway, `iss`, `aud`, the claims config requires, and the subject
//! matching the login user.

use helios_sdk::host;
use serde_json::{Map, Value};

use crate::b64;
use crate::keys::{self, Jwk};

/// What a token must satisfy.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The `iss` every token must carry (none: not checked).
    pub issuer: Option<String>,
    /// A value `aud` must hold (a string, or one of an array).
    pub audience: Option<String>,
    /// Seconds of clock difference tolerated for `exp`, `nbf`, `iat`.
    pub leeway_s: i64,
    /// Tokens older than this (by `iat`) are refused; none: not checked.
    pub max_age_s: Option<i64>,
    /// Claims every token must have.
    pub required: Vec<String>,
    /// The claim that must equal the login user (none: not checked).
    pub user_claim: Option<String>,
}

/// Whether `credential` is shaped like a compact JWS (three base64url parts).
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3 && credential.starts_with("eyJ")
}

/// The token's claims when it verifies and satisfies `rules` for `user` at `now_s`; the
/// reason otherwise (for the log, never for the client).
pub fn verify(
    token: &str,
    keys: &[Jwk],
    rules: &Rules,
    user: &str,
    now_s: i64,
) -> Result<Map<String, Value>, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS".into());
    };
    let header: Value = decode_json(h).ok_or("the header is not base64url JSON")?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("the header names no alg")?;
    if header.get("crit").is_some() {
        return Err("critical header parameters are not supported".into());
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let key = keys::find(keys, kid, alg)
        .ok_or_else(|| format!("no key for kid {kid:?} pinned to {alg}"))?;
    let signature = b64::decode(s).ok_or("the signature is not base64url")?;
    let signed = &token[..h.len() + 1 + p.len()];
    if !host::verify_signature(&key.alg, &key.key, signed.as_bytes(), &signature) {
        return Err(format!("bad {alg} signature"));
    }
    let claims = match decode_json(p) {
        Some(Value::Object(m)) => m,
        _ => return Err("the payload is not a JSON object".into()),
    };
    check_claims(&claims, rules, user, now_s)?;
    Ok(claims)
}

fn decode_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&b64::decode(part)?).ok()
}

fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| format!("{name} is not a number")),
    }
}

fn check_claims(
    claims: &Map<String, Value>,
    rules: &Rules,
    user: &str,
    now_s: i64,
) -> Result<(), String> {
    let leeway = rules.leeway_s;
    let exp = seconds(claims, "exp")?.ok_or("the token has no exp")?;
    if now_s > exp + leeway {
        return Err(format!("expired at {exp}"));
    }
    if let Some(nbf) = seconds(claims, "nbf")?
        && now_s + leeway < nbf
    {
        return Err(format!("not valid before {nbf}"));
    }
    if let Some(iat) = seconds(claims, "iat")? {
        if iat > now_s + leeway {
            return Err(format!("issued in the future ({iat})"));
        }
        if let Some(max) = rules.max_age_s
            && now_s - iat > max + leeway
        {
            return Err(format!("issued at {iat}, older than {max} s"));
        }
    }
    if let Some(iss) = &rules.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(iss)
    {
        return Err("wrong issuer".into());
    }
    if let Some(aud) = &rules.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == aud,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(aud)),
            _ => false,
        };
        if !ok {
            return Err("wrong audience".into());
        }
    }
    if let Some(missing) = rules.required.iter().find(|c| !claims.contains_key(*c)) {
        return Err(format!("required claim {missing:?} is missing"));
    }
    if let Some(claim) = &rules.user_claim
        && claims.get(claim).and_then(Value::as_str) != Some(user)
    {
        return Err(format!("{claim} does not match the login user"));
    }
    Ok(())
}
