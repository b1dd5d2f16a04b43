//! Signature verification for the `crypto` host interface: the JOSE algorithms a token
//! component needs, on `ring` (the TLS stack's own primitives). An algorithm takes only the
//! key kind it is defined for, so a public key can never be used as an HMAC secret.

use ring::{hmac, signature};

/// A key as a component hands it over.
pub enum Key<'a> {
    /// RSA modulus and exponent, big-endian.
    Rsa(&'a [u8], &'a [u8]),
    /// An uncompressed EC point, or an Ed25519 public key.
    Point(&'a [u8]),
    /// An HMAC secret.
    Secret(&'a [u8]),
}

/// Whether `sig` over `msg` verifies under `key` with the JOSE algorithm `alg`.
pub fn verify(alg: &str, key: Key<'_>, msg: &[u8], sig: &[u8]) -> bool {
    match key {
        Key::Rsa(n, e) => {
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
                .verify(params, msg, sig)
                .is_ok()
        }
        Key::Point(point) => {
            let params: &dyn signature::VerificationAlgorithm = match alg {
                "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
                "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
                "EdDSA" => &signature::ED25519,
                _ => return false,
            };
            signature::UnparsedPublicKey::new(params, point)
                .verify(msg, sig)
                .is_ok()
        }
        Key::Secret(secret) => {
            let algorithm = match alg {
                "HS256" => hmac::HMAC_SHA256,
                "HS384" => hmac::HMAC_SHA384,
                "HS512" => hmac::HMAC_SHA512,
                _ => return false,
            };
            // An empty secret would accept anyone who guesses it.
            !secret.is_empty() && hmac::verify(&hmac::Key::new(algorithm, secret), msg, sig).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    #[test]
    fn each_kind_verifies_its_own_algorithms_only() {
        let rng = SystemRandom::new();
        let msg = b"header.payload";
        let ec = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap()
                .as_ref(),
            &rng,
        )
        .unwrap();
        let sig = ec.sign(&rng, msg).unwrap();
        let point = ec.public_key().as_ref();
        assert!(verify("ES256", Key::Point(point), msg, sig.as_ref()));
        assert!(!verify("ES256", Key::Point(point), b"other", sig.as_ref()));
        assert!(!verify("ES384", Key::Point(point), msg, sig.as_ref()));
        // The public key's bytes as an HMAC secret: the HS/ES confusion does not verify.
        let forged = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, point), msg);
        assert!(!verify("HS256", Key::Point(point), msg, forged.as_ref()));
        assert!(!verify("none", Key::Point(point), msg, b""));

        let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
            .unwrap();
        let sig = ed.sign(msg);
        assert!(verify(
            "EdDSA",
            Key::Point(ed.public_key().as_ref()),
            msg,
            sig.as_ref()
        ));

        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA384, b"s3cret"), msg);
        assert!(verify("HS384", Key::Secret(b"s3cret"), msg, mac.as_ref()));
        assert!(!verify("HS256", Key::Secret(b"s3cret"), msg, mac.as_ref()));
        assert!(!verify("RS256", Key::Secret(b"s3cret"), msg, mac.as_ref()));
        assert!(!verify("HS256", Key::Secret(b""), msg, mac.as_ref()));
    }
}
