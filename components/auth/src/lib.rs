//! `auth`: judges the token a client sends as its password (Authenticate hook, with
//! `[auth] method = "component"` in heliosproxy.toml) and maps it to a backend role, a
//! tenant and attributes later hooks read through `context`.
//!
//! - **JWT** (compact JWS): RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512,
//!   verified by the kernel (`crypto.verify-signature`) under the key the header's `kid`
//!   names, with the algorithm that key is pinned to (`alg: none`, HS/RS confusion and keys
//!   of another algorithm never verify). Then `exp` (required), `nbf`, `iat` with
//!   `leeway_s`, `iss`, `aud`, `required_claims`, and `user_claim` equal to the login user.
//! - **API keys**: the SHA-256 of anything that is not a JWT, looked up among the login
//!   user's keys (`api_keys` entries `sha256hex:user:role:expires_unix:rate`).
//!
//! Config: `jwks` (a JWKS document, inline), `issuer`, `audience`, `leeway_s` (30),
//! `max_age_s`, `required_claims`, `user_claim` ("sub"; "" to not check), `role_claim`
//! ("role"), `tenant_claim` ("tenant"), `attribute_claims`, `api_keys`. Every refusal is
//! `28P01`; its reason goes to the proxy's log, the client sees the same words whatever it was.
//! The kernel admits only the backend roles `[auth] allowed_roles` lists.

pub mod api_keys;
pub mod b64;
pub mod keys;
pub mod token;

use std::sync::OnceLock;

use helios_sdk::*;
use serde_json::{Map, Value};

struct Settings {
    keys: Vec<keys::Jwk>,
    rules: token::Rules,
    role_claim: String,
    tenant_claim: String,
    attribute_claims: Vec<String>,
    api_keys: Vec<api_keys::ApiKey>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn settings(config: &Config) -> Result<Settings, String> {
    let keys = match config.text("jwks") {
        Some(doc) => keys::parse(doc)?,
        None => Vec::new(),
    };
    let api_keys = api_keys::parse(&config.texts("api_keys"))?;
    if keys.is_empty() && api_keys.is_empty() {
        return Err(
            "auth: configure `jwks` or `api_keys` (no credential could be accepted)".into(),
        );
    }
    let user_claim = config.text("user_claim").unwrap_or("sub");
    Ok(Settings {
        keys,
        rules: token::Rules {
            issuer: config.text("issuer").map(str::to_owned),
            audience: config.text("audience").map(str::to_owned),
            leeway_s: config.integer("leeway_s").unwrap_or(30).clamp(0, 3600),
            max_age_s: config.integer("max_age_s"),
            required: config.texts("required_claims"),
            user_claim: (!user_claim.is_empty()).then(|| user_claim.to_owned()),
        },
        role_claim: config.text("role_claim").unwrap_or("role").to_owned(),
        tenant_claim: config.text("tenant_claim").unwrap_or("tenant").to_owned(),
        attribute_claims: config.texts("attribute_claims"),
        api_keys,
    })
}

/// A claim's value as text: strings as they are, arrays joined with commas, numbers and
/// booleans as JSON spells them.
fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => Some(
            list.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Null | Value::Object(_) => None,
        other => Some(other.to_string()),
    }
}

/// The identity `credential` proves for `user`, or why it does not.
pub(crate) fn judge(
    s: &Settings,
    user: &str,
    credential: &str,
    now_s: i64,
) -> Result<Identity, String> {
    if token::looks_like_jwt(credential) {
        if s.keys.is_empty() {
            return Err("a JWT, but no jwks is configured".into());
        }
        let claims = token::verify(credential, &s.keys, &s.rules, user, now_s)?;
        let mut attributes = vec![("auth".to_owned(), "jwt".to_owned())];
        for name in &s.attribute_claims {
            if let Some(v) = claim_text(&claims, name) {
                attributes.push((name.clone(), v));
            }
        }
        return Ok(Identity {
            backend_role: claim_text(&claims, &s.role_claim),
            tenant: claim_text(&claims, &s.tenant_claim),
            attributes,
        });
    }
    let hash = host::sha256_hex(credential.as_bytes());
    let key = api_keys::find(&s.api_keys, user, &hash, now_s)?;
    let mut attributes = vec![
        ("auth".to_owned(), "api_key".to_owned()),
        ("api_key_id".to_owned(), key.hash[..12].to_owned()),
    ];
    if key.rate > 0 {
        attributes.push(("rate".to_owned(), key.rate.to_string()));
    }
    Ok(Identity {
        backend_role: key.role.clone(),
        tenant: None,
        attributes,
    })
}

struct Auth;

impl Plugin for Auth {
    fn init(config: &Config) -> Result<Hooks, String> {
        let s = settings(config)?;
        let _ = SETTINGS.set(s);
        Ok(Hooks::AUTHENTICATE)
    }

    fn authenticate(request: &AuthRequest) -> AuthDecision {
        let Some(s) = SETTINGS.get() else {
            return AuthDecision::Deny(refusal("28P01", "not configured"));
        };
        let Some(credential) = request.credential.as_deref().filter(|c| !c.is_empty()) else {
            return AuthDecision::Deny(refusal("28P01", "no token was sent"));
        };
        let now_s = (host::now_ms() / 1000) as i64;
        match judge(s, &request.user, credential, now_s) {
            Ok(identity) => AuthDecision::Allow(identity),
            Err(reason) => AuthDecision::Deny(refusal("28P01", reason)),
        }
    }
}

export_plugin!(Auth);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
