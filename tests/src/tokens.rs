//! JSON Web Tokens as an identity provider issues them, for the auth component's tests: an
//! RSA key (a fixed test key, `components/auth/tests/fixtures`) and a fresh P-256 key, each
//! published in a JWKS, and tokens signed with `ring`.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

const RSA_PK8: &[u8] = include_bytes!("../../components/auth/tests/fixtures/rsa2048.pk8");
/// The RSA test key's JWK (`kid` `rsa-1`, pinned to RS256).
pub const RSA_JWK: &str = include_str!("../../components/auth/tests/fixtures/rsa2048.jwk.json");

/// Base64url without padding.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// An issuer's keys.
pub struct Issuer {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
}

impl Default for Issuer {
    fn default() -> Self {
        Self::new()
    }
}

impl Issuer {
    /// The RSA test key and a fresh EC key.
    pub fn new() -> Issuer {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pk8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Issuer {
            rsa: RsaKeyPair::from_pkcs8(RSA_PK8).unwrap(),
            ec: EcdsaKeyPair::from_pkcs8(alg, pk8.as_ref(), &rng).unwrap(),
        }
    }

    /// The JWKS publishing both keys (`rsa-1` RS256, `ec-1` ES256).
    pub fn jwks(&self) -> String {
        let p = self.ec.public_key().as_ref();
        format!(
            r#"{{"keys":[{RSA_JWK},{{"kty":"EC","kid":"ec-1","alg":"ES256","crv":"P-256","x":"{}","y":"{}"}}]}}"#,
            b64(&p[1..33]),
            b64(&p[33..65])
        )
    }

    /// A token with `claims` (JSON), signed with `alg` (RS256 or ES256) under `kid`.
    pub fn sign(&self, alg: &str, kid: &str, claims: &str) -> String {
        let header = format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"JWT"}}"#);
        let signed = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let rng = SystemRandom::new();
        let sig = match alg {
            "RS256" => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &rng,
                        signed.as_bytes(),
                        &mut sig,
                    )
                    .unwrap();
                sig
            }
            "ES256" => self
                .ec
                .sign(&rng, signed.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            other => panic!("the test issuer does not sign {other}"),
        };
        format!("{signed}.{}", b64(&sig))
    }
}

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
