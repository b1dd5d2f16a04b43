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
//! Config: `jwks` (a JWKS document, inline) and/or `jwks_document` (the name of a document
//! the kernel serves from a file, read again when it changes: keys rotate without a
//! restart), `api_keys` and/or `api_keys_document` (one entry per line, `#` comments:
//! removing a line revokes the key within a second), `issuer`, `audience`, `leeway_s` (30),
//! `max_age_s`, `required_claims`, `user_claim` ("sub"; "" to not check), `role_claim`
//! ("role"), `tenant_claim` ("tenant"), `attribute_claims`, `api_keys`. Every refusal is
//! `28P01`; its reason goes to the proxy's log, the client sees the same words whatever it was.
//! The kernel admits only the backend roles `[auth] allowed_roles` lists.

pub mod api_keys;
pub mod b64;
pub mod keys;
pub mod token;

use std::sync::{Mutex, OnceLock};

use helios_sdk::*;
use serde_json::{Map, Value};

struct Settings {
    keys: Vec<keys::Jwk>,
    jwks_document: Option<String>,
    api_keys_document: Option<String>,
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
    let jwks_document = config.text("jwks_document").map(str::to_owned);
    let api_keys_document = config.text("api_keys_document").map(str::to_owned);
    if keys.is_empty()
        && api_keys.is_empty()
        && jwks_document.is_none()
        && api_keys_document.is_none()
    {
        return Err(
            "auth: configure `jwks`, `jwks_document`, `api_keys` or `api_keys_document` \
             (no credential could be accepted)"
                .into(),
        );
    }
    let user_claim = config.text("user_claim").unwrap_or("sub");
    Ok(Settings {
        keys,
        jwks_document,
        api_keys_document,
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

/// What was parsed from the documents, kept while their bytes stay the same.
#[derive(Default)]
struct FromDocuments {
    jwks: Option<(Vec<u8>, Vec<keys::Jwk>)>,
    api_keys: Option<(Vec<u8>, Vec<api_keys::ApiKey>)>,
}

static DOCUMENTS: Mutex<FromDocuments> = Mutex::new(FromDocuments {
    jwks: None,
    api_keys: None,
});

/// `cached` brought up to date with the document `name` (parsed again only when its bytes
/// changed; a document that does not parse keeps the last good parse, and says so).
fn refreshed<T: Clone>(
    cached: &mut Option<(Vec<u8>, Vec<T>)>,
    name: Option<&str>,
    parse: impl Fn(&[u8]) -> Result<Vec<T>, String>,
) -> Vec<T> {
    if let Some(bytes) = name.and_then(host::document) {
        let changed = cached.as_ref().is_none_or(|(b, _)| *b != bytes);
        if changed {
            match parse(&bytes) {
                Ok(items) => *cached = Some((bytes, items)),
                Err(e) => host::log(
                    host::Level::Warn,
                    &format!("document {name:?}: {e}; keeping the last good one"),
                ),
            }
        }
    }
    cached
        .as_ref()
        .map(|(_, items)| items.clone())
        .unwrap_or_default()
}

/// The keys and API keys in force now: the inline ones and the documents' current ones.
fn in_force(s: &Settings) -> (Vec<keys::Jwk>, Vec<api_keys::ApiKey>) {
    let mut docs = DOCUMENTS.lock().unwrap_or_else(|p| p.into_inner());
    let mut jwks = s.keys.clone();
    jwks.extend(refreshed(&mut docs.jwks, s.jwks_document.as_deref(), |b| {
        keys::parse(&String::from_utf8_lossy(b))
    }));
    let mut api = s.api_keys.clone();
    api.extend(refreshed(
        &mut docs.api_keys,
        s.api_keys_document.as_deref(),
        |b| {
            let text = String::from_utf8_lossy(b);
            let lines: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            api_keys::parse(&lines)
        },
    ));
    (jwks, api)
}

/// The identity `credential` proves for `user` under `jwks` and `api`, or why it does not.
pub(crate) fn judge(
    s: &Settings,
    (jwks, api): (&[keys::Jwk], &[api_keys::ApiKey]),
    user: &str,
    credential: &str,
    now_s: i64,
) -> Result<Identity, String> {
    if token::looks_like_jwt(credential) {
        if jwks.is_empty() {
            return Err("a JWT, but no key is configured".into());
        }
        let claims = token::verify(credential, jwks, &s.rules, user, now_s)?;
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
    let key = api_keys::find(api, user, &hash, now_s)?;
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
        let (jwks, api) = in_force(s);
        match judge(s, (&jwks, &api), &request.user, credential, now_s) {
            Ok(identity) => AuthDecision::Allow(identity),
            Err(reason) => {
                // A key id the key set lacks: the issuer may have rotated; fetch it again
                // (the kernel does it in the background, at most once per 5 s).
                if reason.starts_with("no key for kid")
                    && let Some(doc) = &s.jwks_document
                {
                    host::refresh_document(doc);
                }
                AuthDecision::Deny(refusal("28P01", reason))
            }
        }
    }
}

export_plugin!(Auth);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
