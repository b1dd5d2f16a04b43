//! The component's judgement on real signatures (made here with `ring`, verified by the SDK's
//! native stand-in of the kernel's `crypto.verify-signature`), including the tokens an
//! attacker would try: expired, another key, `alg: none`, HS256 keyed with the RSA public
//! key, a wrong audience, another user's subject.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

use super::*;

const NOW: i64 = 1_800_000_000;
const RSA_PK8: &[u8] = include_bytes!("../tests/fixtures/rsa2048.pk8");
const RSA_JWK: &str = include_str!("../tests/fixtures/rsa2048.jwk.json");
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

struct Keys {
    ec: EcdsaKeyPair,
    ed: Ed25519KeyPair,
    rsa: RsaKeyPair,
}

fn keys() -> Keys {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let ec_pk8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    Keys {
        ec: EcdsaKeyPair::from_pkcs8(alg, ec_pk8.as_ref(), &rng).unwrap(),
        ed: Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
            .unwrap(),
        rsa: RsaKeyPair::from_pkcs8(RSA_PK8).unwrap(),
    }
}

fn jwks(k: &Keys) -> String {
    let p = k.ec.public_key().as_ref();
    format!(
        r#"{{"keys":[{RSA_JWK},
          {{"kty":"RSA","kid":"rsa-pss","alg":"PS256","n":{n},"e":{e}}},
          {{"kty":"EC","kid":"ec-1","alg":"ES256","crv":"P-256","x":"{x}","y":"{y}"}},
          {{"kty":"OKP","kid":"ed-1","alg":"EdDSA","crv":"Ed25519","x":"{ed}"}},
          {{"kty":"oct","kid":"hs-1","alg":"HS256","k":"{k}"}}]}}"#,
        n = serde_json::from_str::<Value>(RSA_JWK).unwrap()["n"],
        e = serde_json::from_str::<Value>(RSA_JWK).unwrap()["e"],
        x = b64(&p[1..33]),
        y = b64(&p[33..65]),
        ed = b64(k.ed.public_key().as_ref()),
        k = b64(HMAC_SECRET),
    )
}

fn settings_for(k: &Keys, extra: &[(&str, ConfigValue)]) -> Settings {
    let mut pairs = vec![
        ("jwks".to_owned(), ConfigValue::Text(jwks(k))),
        (
            "issuer".to_owned(),
            ConfigValue::Text("https://idp.test".into()),
        ),
        (
            "audience".to_owned(),
            ConfigValue::Text("heliosproxy".into()),
        ),
        (
            "attribute_claims".to_owned(),
            ConfigValue::Texts(vec!["region".into(), "groups".into()]),
        ),
        (
            "api_keys".to_owned(),
            ConfigValue::Texts(vec![format!(
                "{}:svc:app_rw:{}:50",
                host::sha256_hex(b"hpk_live_1"),
                NOW + 60
            )]),
        ),
    ];
    pairs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    settings(&Config::new(pairs)).unwrap()
}

fn claims(user: &str, exp: i64) -> String {
    format!(
        r#"{{"sub":"{user}","iss":"https://idp.test","aud":["other","heliosproxy"],"exp":{exp},"iat":{iat},"role":"app_ro","tenant":"acme","region":"eu","groups":["a","b"]}}"#,
        iat = NOW - 10
    )
}

fn token(k: &Keys, alg: &str, kid: &str, payload: &str) -> String {
    let header = format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"JWT"}}"#);
    let signed = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let rng = SystemRandom::new();
    let sig = match alg {
        "RS256" | "PS256" => {
            let pad: &dyn signature::RsaEncoding = if alg == "RS256" {
                &signature::RSA_PKCS1_SHA256
            } else {
                &signature::RSA_PSS_SHA256
            };
            let mut sig = vec![0; k.rsa.public().modulus_len()];
            k.rsa.sign(pad, &rng, signed.as_bytes(), &mut sig).unwrap();
            sig
        }
        "ES256" => {
            k.ec.sign(&rng, signed.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec()
        }
        "EdDSA" => k.ed.sign(signed.as_bytes()).as_ref().to_vec(),
        "HS256" => ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HMAC_SECRET),
            signed.as_bytes(),
        )
        .as_ref()
        .to_vec(),
        _ => Vec::new(),
    };
    format!("{signed}.{}", b64(&sig))
}

#[test]
fn valid_tokens_of_every_kind_map_to_role_tenant_and_attributes() {
    let k = keys();
    let s = settings_for(&k, &[]);
    for (alg, kid) in [
        ("RS256", "rsa-1"),
        ("PS256", "rsa-pss"),
        ("ES256", "ec-1"),
        ("EdDSA", "ed-1"),
        ("HS256", "hs-1"),
    ] {
        let t = token(&k, alg, kid, &claims("alice", NOW + 300));
        let id = judge(&s, (&s.keys, &s.api_keys), "alice", &t, NOW)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(id.backend_role.as_deref(), Some("app_ro"), "{alg}");
        assert_eq!(id.tenant.as_deref(), Some("acme"));
        assert!(id.attributes.contains(&("region".into(), "eu".into())));
        assert!(id.attributes.contains(&("groups".into(), "a,b".into())));
    }
}

#[test]
fn what_an_attacker_sends_is_refused() {
    let k = keys();
    let s = settings_for(&k, &[]);
    let ok = claims("alice", NOW + 300);
    let refused = |t: &str, user: &str, why: &str| {
        let e = judge(&s, (&s.keys, &s.api_keys), user, t, NOW).expect_err(why);
        println!("{why}: {e}");
    };
    refused(
        &token(&k, "ES256", "ec-1", &claims("alice", NOW - 100)),
        "alice",
        "expired",
    );
    let other = keys();
    refused(
        &token(&other, "ES256", "ec-1", &ok),
        "alice",
        "signed by another key",
    );
    let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(ok.as_bytes()));
    refused(&none, "alice", "alg none");
    // HS256 keyed with the RSA key's public modulus, naming the RSA key.
    let n = b64::decode(
        serde_json::from_str::<Value>(RSA_JWK).unwrap()["n"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let header = b64(br#"{"alg":"HS256","kid":"rsa-1"}"#);
    let signed = format!("{header}.{}", b64(ok.as_bytes()));
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &n),
        signed.as_bytes(),
    );
    refused(
        &format!("{signed}.{}", b64(mac.as_ref())),
        "alice",
        "HS/RS confusion",
    );
    let wrong_aud = ok.replace(r#"["other","heliosproxy"]"#, r#""other""#);
    refused(
        &token(&k, "RS256", "rsa-1", &wrong_aud),
        "alice",
        "wrong audience",
    );
    refused(
        &token(&k, "RS256", "rsa-1", &ok),
        "mallory",
        "another user's token",
    );
    let wrong_iss = ok.replace("https://idp.test", "https://evil.test");
    refused(
        &token(&k, "RS256", "rsa-1", &wrong_iss),
        "alice",
        "wrong issuer",
    );
    let no_exp = ok.replace(&format!(r#""exp":{},"#, NOW + 300), "");
    refused(&token(&k, "RS256", "rsa-1", &no_exp), "alice", "no exp");
    let future = ok.replace(
        &format!(r#""iat":{}"#, NOW - 10),
        &format!(r#""iat":{}"#, NOW + 600),
    );
    refused(
        &token(&k, "RS256", "rsa-1", &future),
        "alice",
        "issued in the future",
    );
    // A valid signature with the payload swapped afterwards.
    let t = token(&k, "RS256", "rsa-1", &ok);
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = b64(ok.replace("app_ro", "postgres").as_bytes());
    parts[1] = &forged;
    refused(&parts.join("."), "alice", "payload swapped");
}

#[test]
fn api_keys_are_matched_by_hash_per_user_until_they_expire() {
    let k = keys();
    let s = settings_for(&k, &[]);
    let id = judge(&s, (&s.keys, &s.api_keys), "svc", "hpk_live_1", NOW).unwrap();
    assert_eq!(id.backend_role.as_deref(), Some("app_rw"));
    assert!(id.attributes.contains(&("rate".into(), "50".into())));
    assert!(
        judge(&s, (&s.keys, &s.api_keys), "other", "hpk_live_1", NOW).is_err(),
        "another user"
    );
    assert!(
        judge(&s, (&s.keys, &s.api_keys), "svc", "hpk_live_2", NOW).is_err(),
        "unknown key"
    );
    assert!(
        judge(&s, (&s.keys, &s.api_keys), "svc", "hpk_live_1", NOW + 61).is_err(),
        "expired"
    );
}

#[test]
fn a_key_without_alg_or_a_short_hmac_secret_is_refused_at_init() {
    let no_alg = Config::new(vec![(
        "jwks".into(),
        ConfigValue::Text(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into()),
    )]);
    assert!(settings(&no_alg).is_err());
    let short = Config::new(vec![(
        "jwks".into(),
        ConfigValue::Text(r#"{"keys":[{"kty":"oct","alg":"HS256","k":"c2VjcmV0"}]}"#.into()),
    )]);
    assert!(settings(&short).is_err());
    assert!(
        settings(&Config::new(vec![])).is_err(),
        "nothing configured"
    );
}

#[test]
fn keys_and_api_keys_from_documents_follow_the_documents() {
    let k = keys();
    let s = settings(&Config::new(vec![
        ("jwks_document".into(), ConfigValue::Text("jwks".into())),
        ("api_keys_document".into(), ConfigValue::Text("keys".into())),
        ("user_claim".into(), ConfigValue::Text(String::new())),
    ]))
    .unwrap();
    let line = format!(
        "# service keys\n{}:svc::0:0\n",
        host::sha256_hex(b"hpk_doc")
    );
    helios_sdk::testing::with_fake(|f| {
        f.documents.insert(
            "jwks".into(),
            format!(r#"{{"keys":[{RSA_JWK}]}}"#).into_bytes(),
        );
        f.documents.insert("keys".into(), line.into_bytes());
    });
    let es = token(&k, "ES256", "ec-1", &claims("alice", NOW + 300));
    let rs = token(&k, "RS256", "rsa-1", &claims("alice", NOW + 300));
    let now = |s: &Settings, user: &str, cred: &str| {
        let (jwks, api) = in_force(s);
        judge(s, (&jwks, &api), user, cred, NOW)
    };
    assert!(now(&s, "alice", &rs).is_ok());
    assert!(
        now(&s, "alice", &es).is_err(),
        "the EC key is not published yet"
    );
    assert!(now(&s, "svc", "hpk_doc").is_ok());
    // The key set rotates and the key is revoked: both by their documents alone.
    helios_sdk::testing::with_fake(|f| {
        f.documents.insert("jwks".into(), jwks(&k).into_bytes());
        f.documents.insert("keys".into(), b"# none left\n".to_vec());
    });
    assert!(now(&s, "alice", &es).is_ok());
    assert!(now(&s, "svc", "hpk_doc").is_err(), "revoked");
    // A document that stops parsing keeps the last good keys.
    helios_sdk::testing::with_fake(|f| {
        f.documents.insert("jwks".into(), b"{not json".to_vec());
    });
    assert!(now(&s, "alice", &es).is_ok());
}
